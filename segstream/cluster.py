"""Running the job outside the test fixtures: a local job process, Flink's REST API, retained
checkpoints and savepoints, and a standalone Flink cluster built from the PyFlink distribution.

- `JobProcess`: `python jobs/user_stats.py` (embedded MiniCluster) in its own process group, so
  that one kill -9 takes the client, its JVM and the Python workers together (crash tests).
- `completed_checkpoints` / `latest_checkpoint`: retained checkpoints under `flink.checkpoint_dir`.
  A `chk-N/_metadata` file is the mark of a complete checkpoint: Flink writes it last, through a
  temporary file renamed into place.
- `FlinkRest`: the few REST calls behind `flink list`, `flink stop --savepointPath`, `flink cancel`
  (works against the standalone cluster and against a MiniCluster started with a known `rest.port`).
- `Cluster`: `segstream cluster up|down|status`: one JobManager and one TaskManager as separate
  processes (bin/jobmanager.sh and bin/taskmanager.sh of the PyFlink wheel, start-foreground), on
  127.0.0.1, with a project-owned FLINK_CONF_DIR, pid files and logs under the stack state dir.
  `Cluster.run_command` builds the `flink run -py jobs/user_stats.py` command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import yaml

import pyflink

from segstream.config import PROJECT_ROOT, Settings
from segstream.errors import StackError
from segstream.processes import Service, port_is_free

JOB_SCRIPT = PROJECT_ROOT / "jobs" / "user_stats.py"
JOB_NAME = "segstream-user-stats"  # = jobs.user_stats.JOB_NAME (not imported: that pulls in PyFlink's gateway)
FLINK_HOME = Path(pyflink.__file__).resolve().parent
FLINK_BIN = FLINK_HOME / "bin"
# Extra Flink options for a local job run, one `key: value` per line (read by jobs/flink_env.py),
# e.g. `rest.port: 8081` so that `segstream job stop --savepoint` can reach the MiniCluster.
FLINK_PROPERTIES_ENV = "SEGSTREAM_FLINK_PROPERTIES"


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2,
             abort: Callable[[], str | None] | None = None):
    """Poll `condition` until it returns something truthy (returned); StackError after `timeout`.

    `abort` is checked on each round: a non-empty string ends the wait early with that reason
    (e.g. the job process exited).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if abort is not None and (reason := abort()):
            raise StackError(f"gave up waiting for {what}: {reason}")
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- retained checkpoints -------------------------------------------------------------------------


def _checkpoint_number(path: Path) -> int:
    return int(path.name.split("-", 1)[1])


def completed_checkpoints(checkpoint_dir: Path | str) -> list[Path]:
    """Every complete `chk-N` directory under `checkpoint_dir` (all job ids), oldest first.

    A restored job continues the checkpoint numbering of the checkpoint it restored, so the number
    orders checkpoints across job ids; the modification time breaks ties.
    """
    root = Path(checkpoint_dir)
    found = []
    for metadata in root.glob("*/chk-*/_metadata"):
        try:
            found.append((_checkpoint_number(metadata.parent), metadata.stat().st_mtime, metadata.parent))
        except (FileNotFoundError, ValueError):  # subsumed and deleted meanwhile, or not chk-<int>
            continue
    return [path for _, _, path in sorted(found)]


def latest_checkpoint(checkpoint_dir: Path | str) -> Path | None:
    found = completed_checkpoints(checkpoint_dir)
    return found[-1] if found else None


# --- a local job process ----------------------------------------------------------------------------


def flink_properties(options: dict[str, object]) -> str:
    """The value of SEGSTREAM_FLINK_PROPERTIES for these Flink options."""
    return "\n".join(f"{key}: {value}" for key, value in options.items())


class JobProcess:
    """`python jobs/user_stats.py ...` as a child process in its own process group."""

    def __init__(self, popen: subprocess.Popen, log_path: Path, started: float):
        self.popen = popen
        self.log_path = log_path
        self.started = started  # time.monotonic() at launch

    @classmethod
    def start(cls, config_path: Path | str | None, args: Iterable[str], log_path: Path,
              env: dict[str, str] | None = None, flink_log_dir: Path | None = None,
              flink_options: dict[str, object] | None = None) -> "JobProcess":
        """Launch the job; stdout and stderr go to `log_path`, Flink's own log to `flink_log_dir`."""
        run_env = dict(os.environ)
        if config_path is not None:
            run_env["SEGSTREAM_CONFIG"] = str(config_path)
        if flink_log_dir is not None:
            flink_log_dir.mkdir(parents=True, exist_ok=True)
            run_env["FLINK_LOG_DIR"] = str(flink_log_dir)  # not the shared pyflink/log
        if flink_options:
            run_env[FLINK_PROPERTIES_ENV] = flink_properties(flink_options)
        run_env.update(env or {})
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            popen = subprocess.Popen([sys.executable, str(JOB_SCRIPT), *args], env=run_env, cwd=PROJECT_ROOT,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return cls(popen, log_path, time.monotonic())

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def exit_reason(self) -> str | None:
        """For wait_for(abort=...): why waiting on this job is pointless, if it is."""
        code = self.popen.poll()
        return None if code is None else f"the job exited with {code}:\n{self.tail()}"

    def kill(self, timeout: float = 30.0) -> None:
        """kill -9 the whole process group, and wait until every member is gone."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout)
        wait_for(lambda: not _group_alive(self.pid), timeout, f"process group {self.pid} to die", 0.05)

    def wait(self, timeout: float) -> int:
        """Wait for the job to end; on timeout kill it and raise StackError with its output."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise StackError(f"the job did not finish within {timeout:.0f}s:\n{self.tail()}") from None

    def tail(self, chars: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        # Drop the Google client libraries' version-support warnings: they bury the real error.
        lines = [line for line in text.splitlines() if "FutureWarning" not in line and "warnings.warn" not in line]
        return "\n".join(lines)[-chars:]


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is still in process group `pgid`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


# --- Flink's REST API ---------------------------------------------------------------------------------


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


# --- a standalone cluster --------------------------------------------------------------------------


@dataclass
class ClusterOptions:
    """What `segstream cluster up` can choose; saved next to the Flink config it generates."""

    rest_port: int = 18081
    rpc_port: int = 16123
    slots: int = 2
    jobmanager_memory: str = "1024m"
    taskmanager_memory: str = "1728m"
    # How fast a dead TaskManager is noticed (Flink's defaults, 10 s / 50 s, are for real networks).
    heartbeat_interval_ms: int = 2_000
    heartbeat_timeout_ms: int = 10_000
    # Appended to the JVM options of the JobManager, the TaskManager and the `flink run` client
    # (the tests use -XX:TieredStopAtLevel=1: a third less CPU for short-lived JVMs).
    extra_java_opts: str = ""


DEFAULT_JAVA_OPTS = (  # bin/config.yaml of the PyFlink wheel: Flink's modules need these on Java 17
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED "
    "--add-exports=jdk.compiler/com.sun.tools.javac.api=ALL-UNNAMED "
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED "
    "--add-exports=jdk.compiler/com.sun.tools.javac.parser=ALL-UNNAMED "
    "--add-exports=jdk.compiler/com.sun.tools.javac.tree=ALL-UNNAMED "
    "--add-exports=jdk.compiler/com.sun.tools.javac.util=ALL-UNNAMED "
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED "
    "--add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED "
    "--add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED "
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED "
    "--add-opens=java.base/java.text=ALL-UNNAMED --add-opens=java.base/java.time=ALL-UNNAMED "
    "--add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED "
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED "
    "--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED"
)


class Cluster:
    """A standalone Flink session cluster on 127.0.0.1: one JobManager, one TaskManager.

    Layout under `{stack.state_dir}/flink-cluster/`: `conf/` (FLINK_CONF_DIR: config.yaml and the
    log4j files), `lib/` (FLINK_LIB_DIR: the wheel's lib/ plus opt/flink-python, which a
    TaskManager needs to run Python operators), `log/`, `pids/`, `checkpoints/`, `savepoints/`,
    and the pid files and console logs of the two processes (`segstream.processes.Service`).
    """

    def __init__(self, settings: Settings, options: ClusterOptions | None = None):
        self.settings = settings
        self.home = settings.path(settings.stack.state_dir) / "flink-cluster"
        saved = self.home / "options.json"
        if options is None and saved.exists():
            options = ClusterOptions(**json.loads(saved.read_text()))
        self.options = options or ClusterOptions()

    # layout
    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def lib_dir(self) -> Path:
        return self.home / "lib"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def checkpoint_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def savepoint_dir(self) -> Path:
        return self.home / "savepoints"

    @property
    def jobmanager(self) -> Service:
        return Service("flink-jobmanager", self.home)

    @property
    def taskmanager(self) -> Service:
        return Service("flink-taskmanager", self.home)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.options.rest_port}"

    @property
    def rest(self) -> FlinkRest:
        return FlinkRest(self.rest_url)

    def flink_config(self) -> dict[str, object]:
        o = self.options
        python = sys.executable
        return {
            "jobmanager.rpc.address": "127.0.0.1",
            "jobmanager.rpc.port": o.rpc_port,
            "jobmanager.bind-host": "127.0.0.1",
            "jobmanager.memory.process.size": o.jobmanager_memory,
            "jobmanager.execution.failover-strategy": "region",
            "taskmanager.host": "127.0.0.1",
            "taskmanager.bind-host": "127.0.0.1",
            "taskmanager.numberOfTaskSlots": o.slots,
            "taskmanager.memory.process.size": o.taskmanager_memory,
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "rest.port": o.rest_port,
            "parallelism.default": min(o.slots, self.settings.flink.parallelism),
            "heartbeat.interval": o.heartbeat_interval_ms,
            "heartbeat.timeout": o.heartbeat_timeout_ms,
            "state.backend.type": "rocksdb",
            "execution.checkpointing.incremental": "true",
            "execution.checkpointing.dir": self.checkpoint_dir.resolve().as_uri(),
            "execution.checkpointing.savepoint-dir": self.savepoint_dir.resolve().as_uri(),
            "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
            # Python workers (TaskManager) and the `flink run -py` driver (client) use the venv's
            # interpreter, where segstream is installed (editable), so no -pyfs/-pyarch is needed.
            "python.executable": python,
            "python.client.executable": python,
            "env.java.opts.all": f"{DEFAULT_JAVA_OPTS} {o.extra_java_opts}".strip(),
            "env.pid.dir": str(self.home / "pids"),
            "env.log.dir": str(self.log_dir),
        }

    def environment(self) -> dict[str, str]:
        """Environment for the cluster processes and for `flink run` against this cluster."""
        paths = [str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]
        return {
            "FLINK_CONF_DIR": str(self.conf_dir),
            "FLINK_LIB_DIR": str(self.lib_dir),
            "FLINK_LOG_DIR": str(self.log_dir),
            "FLINK_PID_DIR": str(self.home / "pids"),
            # Python workers import jobs/, operators/, sinks/ and segstream/ from the project.
            "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        }

    def write_config(self) -> None:
        for d in (self.conf_dir, self.lib_dir, self.log_dir, self.home / "pids", self.checkpoint_dir,
                  self.savepoint_dir):
            d.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "config.yaml").write_text(
            "# Written by `segstream cluster up` (segstream/cluster.py); edits are overwritten.\n"
            + yaml.safe_dump(self.flink_config(), sort_keys=False))
        for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties",
                     "log4j-session.properties", "logback.xml", "logback-console.xml"):
            source = FLINK_HOME / "conf" / name
            if source.exists():
                (self.conf_dir / name).write_bytes(source.read_bytes())
        wanted = {p.name: p for p in (FLINK_HOME / "lib").glob("*.jar")}
        wanted.update({p.name: p for p in (FLINK_HOME / "opt").glob("flink-python-*.jar")})
        for existing in self.lib_dir.iterdir():
            if existing.name not in wanted:
                existing.unlink()
        for name, source in wanted.items():
            link = self.lib_dir / name
            if not link.exists():
                link.symlink_to(source)
        (self.home / "options.json").write_text(json.dumps(asdict(self.options), indent=1))

    def up(self, timeout: float = 120.0) -> None:
        """Start the JobManager and a TaskManager (idempotent); return once a slot is registered."""
        if self.jobmanager.pid() is None:
            for port in (self.options.rest_port, self.options.rpc_port):
                if not port_is_free(port):
                    raise StackError(f"flink cluster: port 127.0.0.1:{port} is taken by another process")
            self.write_config()
        env = self.environment()
        self.jobmanager.start([str(FLINK_BIN / "jobmanager.sh"), "start-foreground"], self.options.rest_port,
                              timeout=timeout, env=env, cwd=PROJECT_ROOT)
        wait_for(self.rest.reachable, timeout, f"the JobManager's REST API at {self.rest_url}", 0.5)
        self.start_taskmanager(timeout)

    def start_taskmanager(self, timeout: float = 120.0) -> None:
        if self.taskmanager.pid() is None:
            # It listens on no fixed port: registered with the JobManager is what ready means.
            self.taskmanager.spawn([str(FLINK_BIN / "taskmanager.sh"), "start-foreground"], self.environment(),
                                   PROJECT_ROOT)
        wait_for(lambda: any(tm.get("slotsNumber", 0) > 0 for tm in self.rest.taskmanagers()), timeout,
                 "a TaskManager to register", 0.5,
                 abort=lambda: None if self.taskmanager.pid() else f"it exited (log: {self.taskmanager.log_file})")

    def kill_taskmanager(self) -> int:
        """kill -9 the TaskManager and its Python workers (its process group); returns the pid."""
        pid = self.taskmanager.pid()
        if pid is None:
            raise StackError("no TaskManager is running")
        os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: not _group_alive(pid), 30, "the TaskManager to die", 0.05)
        self.taskmanager.pid_file.unlink(missing_ok=True)
        return pid

    def down(self) -> list[str]:
        return [s.name for s in (self.taskmanager, self.jobmanager) if s.stop()]

    def status(self) -> dict[str, object]:
        jm, tm = self.jobmanager.pid(), self.taskmanager.pid()
        result: dict[str, object] = {"jobmanager": jm, "taskmanager": tm, "rest": self.rest_url,
                                     "conf": str(self.conf_dir), "logs": str(self.log_dir)}
        if jm is not None:
            try:
                result["jobs"] = [(j["jid"], j["name"], j["state"]) for j in self.rest.jobs()]
                result["slots"] = sum(tm.get("slotsNumber", 0) for tm in self.rest.taskmanagers())
            except StackError as exc:
                result["error"] = str(exc)
        return result

    def run_command(self, job_args: Iterable[str] = ("--bounded",), savepoint: str | None = None,
                    detached: bool = False) -> list[str]:
        """`flink run -py jobs/user_stats.py` against this cluster (run it with `environment()`).

        Flink 2's `flink run` has no `-j` for extra jars: the job's own Configuration names the
        Kafka connector jars in `pipeline.jars` (jobs/flink_env.py), and the client uploads those
        with the job graph. flink-python is in the cluster's lib/ (see write_config).
        """
        command = [str(FLINK_BIN / "flink"), "run", "-m", f"127.0.0.1:{self.options.rest_port}"]
        if detached:
            command.append("-d")
        if savepoint:
            command += ["-s", savepoint]
        command += ["-pyexec", sys.executable, "-pyclientexec", sys.executable, "-py", str(JOB_SCRIPT),
                    *job_args]
        return command
