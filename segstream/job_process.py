"""A local job process: `python jobs/user_stats.py` (embedded MiniCluster) in its own process group,
so that one kill -9 takes the client, its JVM and the Python workers together (crash tests).

`JobProcess` starts, watches, kills and waits for it; `group_alive` tells whether a process group
still has live members (also used for the standalone cluster's TaskManager, segstream/cluster.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from segstream.config import PROJECT_ROOT
from segstream.errors import StackError
from segstream.waiting import wait_for

JOB_SCRIPT = PROJECT_ROOT / "jobs" / "user_stats.py"
# Extra Flink options for a local job run, one `key: value` per line (read by jobs/flink_env.py),
# e.g. `rest.port: 8081` so that `segstream job stop --savepoint` can reach the MiniCluster.
FLINK_PROPERTIES_ENV = "SEGSTREAM_FLINK_PROPERTIES"


def flink_properties(options: dict[str, object]) -> str:
    """The value of SEGSTREAM_FLINK_PROPERTIES for these Flink options."""
    return "\n".join(f"{key}: {value}" for key, value in options.items())


class JobProcess:
    """`python jobs/user_stats.py ...` as a child process in its own process group."""

    def __init__(self, popen: subprocess.Popen, log_path: Path, started: float,
                 flink_log_dir: Path | None = None):
        self.popen = popen
        self.log_path = log_path
        self.started = started  # time.monotonic() at launch
        self.flink_log_dir = flink_log_dir

    @classmethod
    def start(cls, config_path: Path | str | None, args: Iterable[str], log_path: Path,
              env: dict[str, str] | None = None, flink_log_dir: Path | None = None,
              flink_options: dict[str, object] | None = None, script: Path = JOB_SCRIPT) -> JobProcess:
        """Launch the job (`script`: JOB_SCRIPT by default); stdout and stderr go to
        `log_path`, Flink's own log to `flink_log_dir`."""
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
            popen = subprocess.Popen([sys.executable, str(script), *args], env=run_env, cwd=PROJECT_ROOT,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return cls(popen, log_path, time.monotonic(), flink_log_dir)

    def rest_port(self, timeout: float = 120) -> int:
        """The port of the MiniCluster's REST API, read from Flink's log once it listens.

        Leave `rest.port` unset and let Flink bind a free port itself: a port picked beforehand can
        be taken by another process before the JVM binds it (it happened on a loaded machine)."""
        from segstream.waiting import wait_for

        if self.flink_log_dir is None:
            raise ValueError("rest_port() needs the job started with flink_log_dir")
        found = re.compile(rb"Rest endpoint listening at [^:\s]+:(\d+)")

        def port() -> int | None:
            for log in sorted(self.flink_log_dir.glob("*.log")):  # type: ignore[union-attr]
                if match := found.search(log.read_bytes()):
                    return int(match.group(1))
            return None

        return wait_for(port, timeout, "the job's REST endpoint", 0.2, abort=self.exit_reason)

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
        wait_for(lambda: not group_alive(self.pid), timeout, f"process group {self.pid} to die", 0.05)

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


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is still in process group `pgid`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False
