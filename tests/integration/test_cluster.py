"""The standalone cluster of `segstream cluster up` (a JobManager and a TaskManager process from the
PyFlink wheel), the job submitted with `flink run -py`:

- a savepoint round trip through the CLI: `segstream job run -d` (flink run), `segstream job stop`
  (flink stop --savepointPath), more traffic, `segstream job run -d --savepoint` (flink run -s) at
  another parallelism: nothing lost, nothing counted twice;
- a kill -9 of the TaskManager at a random point: the JobManager restores the job by itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from operators.events import InvalidEvent, parse_record
from segstream.cluster import Cluster, ClusterOptions
from segstream.config import PROJECT_ROOT
from segstream.flink_rest import JOB_NAME
from segstream.produce import TrafficSpec, generate, produce_records
from segstream.testing import (
    EVENTS,
    FAST_JVM,
    USERS,
    TopicWatcher,
    check_results,
    crash_config,
    crash_taskmanager,
    free_port,
    produce_traffic,
    valid_event_ids,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster(local_stack):
    cluster = Cluster(local_stack.settings, ClusterOptions(rest_port=free_port(), rpc_port=free_port(),
                                                           extra_java_opts=FAST_JVM))
    cluster.up()
    yield cluster
    cluster.down()


def segstream(config_path, *args: str, **env: str) -> str:
    """Run the segstream CLI as a user would; its stdout."""
    result = subprocess.run([sys.executable, "-m", "segstream.cli", *args], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "SEGSTREAM_CONFIG": str(config_path), **env})
    assert result.returncode == 0, f"segstream {' '.join(args)}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def stop_with_savepoint(config_path) -> str:
    out = segstream(config_path, "job", "stop")
    found = re.search(r"with savepoint (\S+)", out)
    assert found, out
    return found.group(1)


def test_stop_with_a_savepoint_and_resume_it_rescaled_with_flink_run_s(cluster, job_config, tmp_path):
    settings, config_path = crash_config(job_config[1], tmp_path / "cluster.yaml", {"checkpoint_interval_ms": 2_000})
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    traffic = list(generate(TrafficSpec(events=5_000, users=300, seed=31, invalid_ratio=0.005, tenants=2)))
    watcher = TopicWatcher(bootstrap, topics.evaluations)
    wanted: set[str] = set()
    savepoint = None
    try:
        for part, parallelism in ((traffic[:2_500], "2"), (traffic[2_500:], "1")):
            produce_records(bootstrap, topics.events, part, progress=False)
            for record in part:
                try:
                    wanted.add(parse_record(record.value).event_id)
                except InvalidEvent:
                    pass
            args = ["job", "run", "-d"] + (["--savepoint", savepoint] if savepoint else [])
            segstream(config_path, *args, SEGSTREAM_FLINK__PARALLELISM=parallelism)
            wait_for(lambda: wanted <= watcher.event_ids, 300, f"{len(wanted)} evaluations", 0.2)
            savepoint = stop_with_savepoint(config_path)
    finally:
        watcher.close()

    ours = [j for j in cluster.rest.jobs() if j["name"] == JOB_NAME and j["state"] == "FINISHED"]
    assert len(ours) >= 2
    counts = check_results(settings)  # seqs continue across the restore, stats equal a recomputation
    assert counts["duplicates"] == 0, f"stop-with-savepoint and resume must not replay anything: {counts}"


def test_the_jobmanager_restores_the_job_after_the_taskmanager_is_killed(cluster, job_config, tmp_path):
    """`flink run -py jobs/user_stats.py --bounded`, and a kill -9 of the TaskManager at a random
    point after a checkpoint; a new TaskManager, as a supervisor would start. Four times the usual
    traffic, as in test_recovery.py: the JVM job reads a backlog fast, and with 6,000 events a kill
    meant for 24 % of the way landed after the last evaluation (CI run ci22)."""
    seed = 4
    settings, config_path = crash_config(job_config[1], tmp_path / "crash.yaml")
    produce_traffic(settings, seed, events=4 * EVENTS, users=4 * USERS)
    valid_ids = valid_event_ids(settings)

    run = crash_taskmanager(cluster, settings, config_path, tmp_path, seed, valid_ids)

    print(f"\n{run}")
    assert run.mid_stream, f"the kill did not fall mid-stream: {run}"
    print(check_results(settings))
