"""A Bigtable outage longer than the old fixed-delay strategy's 5 attempts ends in recovery
(issue 14 item 7, docs/recovery.md): the exponential-delay restart strategy never gives up on a
recoverable fault. The emulator is paused (SIGSTOP: it keeps its connections and answers nothing,
like a hung server) until the job has failed over more than 5 times, then resumed; the job must
recover by itself and its outputs must be exact. Delays are small for the test: the sink gives up
after 2 s (bigtable.give_up_after_s), restarts wait 0.2 s doubling up to 1 s."""

from __future__ import annotations

import os
import signal

import pytest
import yaml

from segstream.flink_rest import FlinkRest
from segstream.job_process import JobProcess
from segstream.testing import (
    FAST_JVM,
    TopicWatcher,
    check_results,
    crash_config,
    feed_while_running,
    input_events,
    sinks_complete,
    stop_with_savepoint,
    traffic,
    valid_ids_of,
    write_config,
)
from segstream.waiting import wait_for

# More failovers than fixed-delay's 5 attempts allowed: the old configuration ends FAILED here.
FAILOVERS = 6


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_bigtable_outage_past_five_restarts_ends_in_recovery(job_config, local_stack, tmp_path):
    settings, config_path = crash_config(job_config[1], tmp_path / "outage.yaml", flink={
        "restart_initial_backoff_ms": 200, "restart_max_backoff_ms": 1_000, "restart_jitter_factor": 0.0})
    data = yaml.safe_load(config_path.read_text())
    data["bigtable"]["give_up_after_s"] = 2
    settings = write_config(config_path, data)
    records = traffic(seed=14, events=2_000, users=100)
    valid_ids = valid_ids_of(records)
    emulator_pid = local_stack.stack.emulator.pid()
    assert emulator_pid is not None

    watcher = TopicWatcher(settings.kafka.bootstrap_servers, settings.kafka.topics.evaluations)
    feed = feed_while_running(settings, records, rate=100)  # the input keeps coming during the outage
    job = JobProcess.start(config_path, [], tmp_path / "job.log", env={"JVM_ARGS": FAST_JVM},
                           flink_log_dir=tmp_path / "flink-log")
    try:
        wait_for(lambda: watcher.count > 0, 240, "the job's first evaluation", 0.2, abort=job.exit_reason)
        rest = FlinkRest(f"http://127.0.0.1:{job.rest_port()}")
        job_id = rest.running_job()
        os.kill(emulator_pid, signal.SIGSTOP)
        try:
            wait_for(lambda: len(rest.exceptions(job_id)) >= FAILOVERS, 300,
                     f"{FAILOVERS} failovers while Bigtable is paused", 1.0, abort=job.exit_reason)
            assert rest.job(job_id)["state"] != "FAILED"
        finally:
            os.kill(emulator_pid, signal.SIGCONT)
        feed.join(240)
        wait_for(lambda: valid_ids <= watcher.event_ids, 300, "every valid event to be evaluated", 0.5,
                 abort=job.exit_reason)
        per_user, invalid = input_events(settings)
        wait_for(sinks_complete(settings, per_user, invalid), 300,
                 "every valid event in Bigtable and every invalid record dead-lettered", 0.5, abort=job.exit_reason)
        failovers = len(rest.exceptions(job_id))
        stop_with_savepoint(job, None, tmp_path / "savepoints")
    finally:
        os.kill(emulator_pid, signal.SIGCONT)
        watcher.close()
        if job.running():
            job.kill()
    print(f"\n{failovers} failovers during the outage; results: {check_results(settings)}")
