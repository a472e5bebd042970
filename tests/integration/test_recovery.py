"""Crash recovery of the whole job on the embedded MiniCluster (segstream/testing.py does the
runs and the checks): two random kill points, one with the exactly-once Kafka sink. With the
TaskManager kill of test_cluster.py and the unbounded run of test_expiry.py, CI kills the job at
four random points; bench/chaos.py runs the crash test many times and prints a table."""

from __future__ import annotations

import os
import random

import pytest

from segstream.testing import (
    EVENTS,
    USERS,
    check_results,
    crash_and_recover,
    crash_config,
    feed_while_running,
    produce_traffic,
    traffic,
    valid_event_ids,
    valid_ids_of,
)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_at_a_random_point_and_restore_the_latest_checkpoint(job_config, tmp_path):
    """A bounded run over a backlog (the whole input is in Kafka before the job starts), at-least-once.
    Four times the usual traffic: the job reads a backlog as fast as it can, and on a loaded machine
    its first checkpoint completed once 5,615 of 6,000 evaluations were out, too late for a kill to
    leave the restored job anything to redo."""
    seed = 1
    settings, config_path = crash_config(job_config[1], tmp_path / "crash.yaml")
    produce_traffic(settings, seed, events=4 * EVENTS, users=4 * USERS)
    valid_ids = valid_event_ids(settings)

    run = crash_and_recover(settings, config_path, tmp_path, seed, valid_ids)

    print(f"\n{run}")
    assert run.mid_stream, f"the kill did not fall mid-stream: {run}"
    print(check_results(settings))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_exactly_once_across_a_kill_9_read_committed_sees_each_evaluation_once(job_config, tmp_path):
    """The transactional Kafka sink, unbounded, on live traffic (feed_while_running), checkpoints
    every 3 s: kill -9 at a random point, restore the latest checkpoint, stop with a savepoint.
    A read_committed consumer of `evaluations` must see every valid event's evaluation exactly
    once (no loss, no duplicate) and nothing before the first checkpoint completed; the state,
    Bigtable and dead letters are exact too. The kill point comes from a printed seed:
    SEGSTREAM_CRASH_SEED=N replays a run."""
    seed = int(os.environ.get("SEGSTREAM_CRASH_SEED") or random.SystemRandom().randrange(1_000_000))
    print(f"\nexactly-once crash seed: {seed} (replay: SEGSTREAM_CRASH_SEED={seed})")
    settings, config_path = crash_config(job_config[1], tmp_path / "crash.yaml", delivery_guarantee="exactly-once",
                                         flink={"checkpoint_interval_ms": 3_000})
    records = traffic(seed)
    valid_ids = valid_ids_of(records)

    feed = feed_while_running(settings, records)
    run = crash_and_recover(settings, config_path, tmp_path, seed, valid_ids, bounded=False)
    feed.join(60)

    print(run)
    assert run.mid_stream, f"the kill did not fall mid-stream: {run}"
    assert run.written_before_first_checkpoint > 0, f"nothing was written before the first checkpoint: {run}"
    assert run.committed_before_first_checkpoint == 0, f"records visible before their commit: {run}"
    assert run.committed_at_end == len(valid_ids), run
    assert run.committed_duplicates == 0, f"read_committed saw duplicates: {run}"
    print(check_results(settings, committed_only=True, exactly_once=True))
