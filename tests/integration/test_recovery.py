"""Crash recovery of the whole job on the embedded MiniCluster (tests/integration/crash.py does the
runs and the checks): two random kill points, one with the exactly-once Kafka sink. With the
TaskManager kill of test_cluster.py and the unbounded run of test_expiry.py, CI kills the job at
four random points; bench/chaos.py runs the crash test many times and prints a table."""

from __future__ import annotations

import pytest

from tests.integration.checks import valid_event_ids
from tests.integration.crash import check_results, crash_and_recover, crash_config, produce_traffic


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed, guarantee", [(1, "at-least-once"), (3, "exactly-once")])
def test_kill_9_at_a_random_point_and_restore_the_latest_checkpoint(job_config, tmp_path, seed, guarantee):
    """Random kill points. The exactly-once run uses the transactional Kafka sink, with checkpoints
    every 3 s so that evaluations are seen waiting in open transactions: none may be visible to a
    read_committed consumer before the first checkpoint completes. After the restore the local
    broker still shows the aborted transactions' records (../shared/notes/stack.md), so the end
    result is checked like at-least-once: identical duplicates, deduplicated by event_id."""
    transactional = guarantee == "exactly-once"
    settings, config_path = crash_config(job_config[1], tmp_path / "crash.yaml", delivery_guarantee=guarantee,
                                         flink={"checkpoint_interval_ms": 3_000} if transactional else None)
    produce_traffic(settings, seed)
    valid_ids = valid_event_ids(settings)

    run = crash_and_recover(settings, config_path, tmp_path, seed, valid_ids)

    print(f"\n{run}")
    assert 0 < run.evaluations_at_kill < len(valid_ids), f"the kill did not fall mid-stream: {run}"
    if transactional:
        assert run.written_before_first_checkpoint > 0, f"nothing was written before the first checkpoint: {run}"
        assert run.committed_before_first_checkpoint == 0, f"records visible before their commit: {run}"
    print(check_results(settings))
