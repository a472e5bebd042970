"""Flink's REST API: `FlinkRest`, the few calls behind `flink list`, `flink stop --savepointPath`,
`flink savepoint`, `flink cancel` (works against the standalone cluster and against a MiniCluster
started with a known `rest.port`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from segstream.errors import StackError
from segstream.waiting import wait_for

JOB_NAME = "segstream-user-stats"  # = jobs.user_stats.JOB_NAME (not imported: that pulls in PyFlink's gateway)


class FlinkRest:
    """The REST calls segstream needs (Flink's CLI does the same through the same endpoints)."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise StackError(f"Flink REST {method} {path}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise StackError(f"Flink REST API at {self.url} is unreachable ({exc})") from None
        return json.loads(raw) if raw else {}

    def reachable(self) -> bool:
        try:
            self._call("GET", "/overview")
        except StackError:
            return False
        return True

    def overview(self) -> dict:
        return self._call("GET", "/overview")

    def jobs(self) -> list[dict]:
        """[{jid, name, state, start-time, ...}] for every job the cluster knows."""
        return self._call("GET", "/jobs/overview").get("jobs", [])

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/jobs/{job_id}")

    def running_job(self, name: str | None = JOB_NAME) -> str:
        """The id of the one running (or restarting) job, by name; StackError if none or several."""
        live = [j for j in self.jobs() if j["state"] in ("RUNNING", "CREATED", "RESTARTING", "INITIALIZING")
                and (name is None or j["name"] == name)]
        if len(live) != 1:
            what = f"job named {name!r}" if name else "job"
            raise StackError(f"expected one running {what} at {self.url}, found {len(live)}")
        return live[0]["jid"]

    def tasks_running(self, job_id: str) -> bool:
        """Whether the job and all its tasks run (finished sources count): a savepoint can be taken."""
        job = self.job(job_id)
        return job["state"] == "RUNNING" and all(v["status"] in ("RUNNING", "FINISHED") for v in job["vertices"])

    def checkpoints(self, job_id: str) -> dict:
        return self._call("GET", f"/jobs/{job_id}/checkpoints")

    def exceptions(self, job_id: str) -> list[dict]:
        """The job's failure history (each failover), newest first."""
        return self._call("GET", f"/jobs/{job_id}/exceptions").get("exceptionHistory", {}).get("entries", [])

    def taskmanagers(self) -> list[dict]:
        return self._call("GET", "/taskmanagers").get("taskmanagers", [])

    def taskmanager_metrics(self, tm_id: str, names: list[str] | None = None) -> dict[str, float]:
        """A TaskManager's metrics (all of them, or `names`) as the REST API last fetched them
        (metrics.fetcher.update-interval): name -> value."""
        if names is None:
            names = [m["id"] for m in self._call("GET", f"/taskmanagers/{tm_id}/metrics")]
        found = self._call("GET", f"/taskmanagers/{tm_id}/metrics?get={','.join(names)}") if names else []
        return {m["id"]: float(m["value"]) for m in found}

    def operator_metric(self, job_id: str, vertex_name: str, suffix: str) -> float | None:
        """The greatest value over the subtasks of the metric ending in `suffix` of the job vertex
        whose name contains `vertex_name` (an operator's metrics are named after it), or None while
        it is not reported yet."""
        vertex = next(v for v in self.job(job_id)["vertices"] if vertex_name in v["name"])
        path = f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics"
        names = [m["id"] for m in self._call("GET", path) if m["id"].endswith(suffix)]
        if not names:
            return None
        return max(float(m["max"]) for m in self._call("GET", f"{path}?get={','.join(names)}&agg=max"))

    def _await_savepoint(self, job_id: str, trigger: str, timeout: float) -> str:
        def done():
            status = self._call("GET", f"/jobs/{job_id}/savepoints/{trigger}")
            if status.get("status", {}).get("id") != "COMPLETED":
                return None
            operation = status.get("operation", {})
            if "failure-cause" in operation:
                cause = operation["failure-cause"].get("stack-trace", "")
                raise StackError(f"savepoint of job {job_id} failed:\n{cause[:3000]}")
            return operation["location"]

        return wait_for(done, timeout, f"the savepoint of job {job_id}", interval=0.5)

    def stop_with_savepoint(self, job_id: str, target_dir: str | None = None, drain: bool = False,
                            timeout: float = 300.0) -> str:
        """`flink stop --savepointPath target_dir job_id`: savepoint, then stop; returns its location.

        Sources stop after the savepoint barrier and the sinks commit (exactly-once Kafka
        transactions included); with `drain` the job also flushes event-time windows (a final
        MAX_WATERMARK), which is only for jobs that will not be resumed.
        """
        # A job still deploying refuses the savepoint ("not all required tasks are currently running").
        wait_for(lambda: self.tasks_running(job_id), timeout, f"every task of job {job_id} to run", 0.5)
        body: dict[str, object] = {"drain": drain, "formatType": "CANONICAL"}
        if target_dir:
            body["targetDirectory"] = target_dir
        trigger = self._call("POST", f"/jobs/{job_id}/stop", body)["request-id"]
        location = self._await_savepoint(job_id, trigger, timeout)
        wait_for(lambda: self._ended(job_id), 60, f"job {job_id} to stop")
        return location

    def _ended(self, job_id: str) -> bool:
        """Whether the job reached a terminal state (or its MiniCluster shut down with it)."""
        try:
            return self.job(job_id)["state"] in ("FINISHED", "CANCELED", "FAILED")
        except StackError as exc:
            return "unreachable" in str(exc)

    def savepoint(self, job_id: str, target_dir: str | None = None, timeout: float = 300.0) -> str:
        """`flink savepoint job_id target_dir`: a savepoint, the job keeps running."""
        wait_for(lambda: self.tasks_running(job_id), timeout, f"every task of job {job_id} to run", 0.5)
        body: dict[str, object] = {"cancel-job": False, "formatType": "CANONICAL"}
        if target_dir:
            body["target-directory"] = target_dir
        trigger = self._call("POST", f"/jobs/{job_id}/savepoints", body)["request-id"]
        return self._await_savepoint(job_id, trigger, timeout)

    def cancel(self, job_id: str) -> None:
        """`flink cancel job_id` (checkpoints are retained: RETAIN_ON_CANCELLATION)."""
        self._call("PATCH", f"/jobs/{job_id}?mode=cancel")
