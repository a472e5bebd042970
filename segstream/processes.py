"""Background service processes of the local stack: pid files and logs under one state directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from segstream.errors import StackError


def free_port() -> int:
    """A port nothing listens on now (the OS's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_port(port: int, timeout: float, host: str = "127.0.0.1", pid: int | None = None) -> None:
    """Wait until something accepts TCP connections on host:port (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and not is_running(pid):
            raise StackError(f"process {pid} exited before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise StackError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); look at its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


class Service:
    """One named background process: `{state_dir}/{name}.pid` and `{state_dir}/logs/{name}.log`."""

    def __init__(self, name: str, state_dir: Path):
        self.name = name
        self.pid_file = state_dir / f"{name}.pid"
        self.log_file = state_dir / "logs" / f"{name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if is_running(pid) else None

    def start(self, argv: list[str], port: int, timeout: float = 30.0, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> int:
        """Start unless already running; return the pid once the port answers."""
        if (pid := self.pid()) is not None:
            return pid
        if not port_is_free(port):
            raise StackError(f"{self.name}: port 127.0.0.1:{port} is taken by another process")
        pid = self.spawn(argv, env, cwd)
        try:
            wait_port(port, timeout, pid=pid)
        except StackError as exc:
            self.stop()
            raise StackError(f"{self.name}: {exc} (log: {self.log_file})") from None
        return pid

    def spawn(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        """Launch in its own process group (stop() takes the whole group), output to the log file."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        return process.pid

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop if running (TERM, then KILL); return whether anything was stopped."""
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_running(pid):
            os.killpg(pid, signal.SIGKILL)
        return True
