"""A front as a child process: `segstream serve` in its own process group, for the demo and for
the tests that need a real HTTP server (a browser) or a front to kill (kill -9, SIGTERM).

Like segstream/job_process.py for the job: start it, wait until it is ready, stop or kill it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from segstream.config import PROJECT_ROOT
from segstream.processes import free_port, port_is_free
from segstream.waiting import wait_for


def segstream_command() -> str:
    """The `segstream` console script of this interpreter's environment."""
    beside = Path(sys.executable).with_name("segstream")
    return str(beside) if beside.exists() else (shutil.which("segstream") or "segstream")


def free_or(port: int) -> int:
    """`port` if nothing listens on it, else a free one."""
    return port if port_is_free(port) else free_port()


def http_json(method: str, url: str, body: object = None, key: str | None = None,
              timeout: float = 10.0) -> tuple[int, dict]:
    """One JSON request with the standard library (the demo runs without the test extras):
    (status, decoded body), 4xx and 5xx included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


class FrontProcess:
    """`segstream serve --host 127.0.0.1 --port P` with SEGSTREAM_CONFIG = `config_path`."""

    def __init__(self, popen: subprocess.Popen, port: int, log_path: Path):
        self.popen = popen
        self.port = port
        self.log_path = log_path

    @classmethod
    def start(cls, config_path: Path | str | None, port: int, log_path: Path,
              env: dict[str, str] | None = None) -> FrontProcess:
        run_env = dict(os.environ)
        if config_path is not None:
            run_env["SEGSTREAM_CONFIG"] = str(config_path)
        run_env.update(env or {})
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            popen = subprocess.Popen([segstream_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                     env=run_env, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return cls(popen, port, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def exit_reason(self) -> str | None:
        """For wait_for(abort=...)."""
        code = self.popen.poll()
        return None if code is None else f"the front exited with {code}:\n{self.tail()}"

    def health(self) -> dict | None:
        """/healthz's body when it answers 200, else None."""
        try:
            status, body = http_json("GET", self.url + "/healthz", timeout=5)
        except (OSError, ValueError):
            return None
        return body if status == 200 else None

    def wait_ready(self, timeout: float = 60.0) -> dict:
        """Until it listens, Kafka answers and its reply consumer is assigned (answers can come back)."""
        return wait_for(lambda: (h := self.health()) is not None and h.get("replies_ready") and h, timeout,
                        f"the front on port {self.port}", 0.1, abort=self.exit_reason)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM: uvicorn stops accepting, finishes the requests in flight, then the front flushes
        its producer and exits. The exit code is -15 all the same: after its graceful shutdown
        uvicorn raises the signal it caught again (its log ends "Application shutdown complete")."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
        return self.popen.wait(timeout)

    def kill(self, timeout: float = 30.0) -> None:
        """kill -9 the process group: no shutdown at all."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout)

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""
