"""Crash recovery of the whole job on the embedded MiniCluster (segstream/testing.py does the
runs and the checks): two random kill points, one with the exactly-once Kafka sink. With the
TaskManager kill of test_cluster.py and the unbounded run of test_expiry.py, CI kills the job at
four random points; bench/chaos.py runs the crash test many times and prints a table."""

from __future__ import annotations

import pytest

from segstream.testing import (
    check_results, crash_and_recover, crash_config, feed_while_running, produce_traffic, traffic, valid_event_ids,
    valid_ids_of,
)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_at_a_random_point_and_restore_the_latest_checkpoint(job_config, tmp_path):
    """A bounded run over a backlog (the whole input is in Kafka before the job starts), at-least-once."""
    seed = 1
    settings, config_path = crash_config(job_config[1], tmp_path / "crash.yaml")
    produce_traffic(settings, seed)
    valid_ids = valid_event_ids(settings)

    run = crash_and_recover(settings, config_path, tmp_path, seed, valid_ids)

    print(f"\n{run}")
    assert run.mid_stream, f"the kill did not fall mid-stream: {run}"
    print(check_results(settings))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_exactly_once_sink_across_a_kill_9(job_config, tmp_path):
    """The transactional Kafka sink, unbounded, on live traffic (testing.feed_while_running), with
    checkpoints every 3 s so that evaluations are seen waiting in open transactions: none may be
    visible to a read_committed consumer before the first checkpoint completes.

    What the local broker cannot show (docs/recovery.md, "Exactly-once on the local broker"): it
    hands records of aborted transactions to read_committed consumers, and after a kill -9 a
    transaction of the killed job can stay open for good, stalling read_committed consumers. So
    the end result is checked over everything written (read_uncommitted): every event evaluated,
    copies identical, state, Bigtable and dead letters exact; the committed count is printed."""
    seed = 3
    settings, config_path = crash_config(job_config[1], tmp_path / "crash.yaml", delivery_guarantee="exactly-once",
                                         flink={"checkpoint_interval_ms": 3_000})
    records = traffic(seed)
    valid_ids = valid_ids_of(records)

    feed = feed_while_running(settings, records)
    run = crash_and_recover(settings, config_path, tmp_path, seed, valid_ids, bounded=False)
    feed.join(60)

    print(f"\n{run}")
    assert run.mid_stream, f"the kill did not fall mid-stream: {run}"
    assert run.written_before_first_checkpoint > 0, f"nothing was written before the first checkpoint: {run}"
    assert run.committed_before_first_checkpoint == 0, f"records visible before their commit: {run}"
    print(check_results(settings, committed_only=False),
          f"visible to read_committed at the end: {run.committed_at_end} of {len(valid_ids)}")
