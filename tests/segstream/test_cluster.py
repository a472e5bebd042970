"""Running the job without a cluster: retained-checkpoint lookup (segstream/checkpoints.py), the
REST protocol of `segstream job stop` (segstream/flink_rest.py), and the standalone cluster's
config and `flink run` command line (segstream/cluster.py)."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from segstream.checkpoints import completed_checkpoints, latest_checkpoint
from segstream.cluster import FLINK_BIN, Cluster, ClusterOptions
from segstream.config import load_settings
from segstream.errors import StackError
from segstream.flink_rest import FlinkRest
from segstream.job_process import JOB_SCRIPT
from segstream.testing import free_port


def test_only_checkpoints_with_metadata_count_and_the_number_orders_them(tmp_path):
    """A kill -9 can leave chk-N without _metadata (in progress): never restore that one."""
    for job, n, complete in [("a", 1, True), ("a", 2, False), ("b", 2, True), ("b", 10, True), ("b", 11, False)]:
        (tmp_path / job / f"chk-{n}").mkdir(parents=True)
        if complete:
            (tmp_path / job / f"chk-{n}" / "_metadata").write_bytes(b"x")
    (tmp_path / "a" / "shared").mkdir()
    assert [(p.parent.name, p.name) for p in completed_checkpoints(tmp_path)] == [
        ("a", "chk-1"), ("b", "chk-2"), ("b", "chk-10")]
    assert latest_checkpoint(tmp_path) == tmp_path / "b" / "chk-10"
    assert latest_checkpoint(tmp_path / "nothing-here") is None


def test_stop_with_savepoint_speaks_flinks_rest_protocol():
    """The REST calls of `segstream job stop --savepoint`, against a stand-in for the JobManager."""
    calls = []
    state = {"polls": 0, "job": "RUNNING"}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            calls.append(("GET", self.path))
            if self.path == "/jobs/overview":
                self._reply({"jobs": [{"jid": "j1", "name": "segstream-user-stats", "state": state["job"]},
                                      {"jid": "j0", "name": "segstream-user-stats", "state": "FINISHED"}]})
            elif self.path == "/jobs/j1/savepoints/t1":
                state["polls"] += 1
                if state["polls"] < 2:
                    self._reply({"status": {"id": "IN_PROGRESS"}})
                else:
                    state["job"] = "FINISHED"
                    self._reply({"status": {"id": "COMPLETED"}, "operation": {"location": "file:/sp/savepoint-1"}})
            elif self.path == "/jobs/j1":
                # deploying at the first look: the stop must wait until every task runs
                state["looks"] = state.get("looks", 0) + 1
                deploying = state["looks"] == 1
                self._reply({"jid": "j1", "state": state["job"], "vertices": [
                    {"status": "FINISHED"}, {"status": "DEPLOYING" if deploying else "RUNNING"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(("POST", self.path, body))
            self._reply({"request-id": "t1"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        rest = FlinkRest(f"http://127.0.0.1:{server.server_address[1]}")
        job_id = rest.running_job()
        assert rest.stop_with_savepoint(job_id, "file:///sp", timeout=10) == "file:/sp/savepoint-1"
    finally:
        server.shutdown()
    stop = {"drain": False, "formatType": "CANONICAL", "targetDirectory": "file:///sp"}
    assert ("POST", "/jobs/j1/stop", stop) in calls
    assert calls.index(("GET", "/jobs/j1")) < calls.index(("POST", "/jobs/j1/stop", stop)), "stopped while deploying"
    assert calls.count(("GET", "/jobs/j1")) >= 2
    with pytest.raises(StackError, match="unreachable"):
        FlinkRest(f"http://127.0.0.1:{free_port()}", timeout=2).jobs()


def test_cluster_config_and_flink_run_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGSTREAM_STACK__STATE_DIR", str(tmp_path))
    cluster = Cluster(load_settings(), ClusterOptions(rest_port=18123, rpc_port=16124, slots=3))
    config = cluster.flink_config()
    assert (config["rest.port"], config["jobmanager.rpc.port"], config["taskmanager.numberOfTaskSlots"]) == (
        18123, 16124, 3)
    assert config["python.executable"] == sys.executable
    assert all(config[k] == "127.0.0.1" for k in ("rest.address", "jobmanager.rpc.address", "taskmanager.host"))
    assert config["state.backend.type"] == "rocksdb"
    assert cluster.run_command(["--bounded"], savepoint="file:///sp/savepoint-1", detached=True) == [
        str(FLINK_BIN / "flink"), "run", "-m", "127.0.0.1:18123", "-d", "-s", "file:///sp/savepoint-1",
        "-pyexec", sys.executable, "-pyclientexec", sys.executable, "-py", str(JOB_SCRIPT), "--bounded"]

    cluster.write_config()  # what `up` writes before it starts anything
    assert (cluster.conf_dir / "config.yaml").exists()
    assert any(p.name.startswith("flink-python") for p in cluster.lib_dir.iterdir())
    assert Cluster(load_settings()).options == cluster.options, "a later command must find the ports `up` used"
