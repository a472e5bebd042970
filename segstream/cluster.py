"""A standalone Flink cluster built from the PyFlink distribution.

`Cluster`: `segstream cluster up|down|status`: one JobManager and one TaskManager as separate
processes (bin/jobmanager.sh and bin/taskmanager.sh of the PyFlink wheel, start-foreground), on
127.0.0.1, with a project-owned FLINK_CONF_DIR, pid files and logs under the stack state dir.
`Cluster.run_command` builds the `flink run -py jobs/user_stats.py` command line.

The rest of running the job lives next to it: segstream/flink_rest.py (the REST client),
segstream/job_process.py (the job as a local process), segstream/checkpoints.py (retained
checkpoints).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyflink
import yaml

from segstream.config import PROJECT_ROOT, Settings
from segstream.errors import StackError
from segstream.flink_rest import FlinkRest
from segstream.job_process import JOB_SCRIPT, group_alive
from segstream.processes import Service, port_is_free
from segstream.waiting import wait_for

FLINK_HOME = Path(pyflink.__file__).resolve().parent
FLINK_BIN = FLINK_HOME / "bin"


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
        wait_for(lambda: not group_alive(pid), 30, "the TaskManager to die", 0.05)
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
