"""Process management for Google's Bigtable emulator (cbtemulator), used by `segstream stack`.

The emulator keeps everything in memory: a restart loses all tables, so callers run
`sinks.bigtable.schema.ensure_tables` after `wait_ready`.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import grpc

from segstream.errors import StackError

KNOWN_PATH = Path("/usr/lib/google-cloud-sdk/platform/bigtable-emulator/cbtemulator")
DEB_PACKAGE = "google-cloud-cli-bigtable-emulator"


def find_binary() -> Path:
    """The cbtemulator binary: the gcloud SDK's usual place, else wherever the Debian package put it."""
    if KNOWN_PATH.is_file():
        return KNOWN_PATH
    try:
        listing = subprocess.run(
            ["dpkg", "-L", DEB_PACKAGE], capture_output=True, text=True, check=False
        ).stdout
    except FileNotFoundError:
        listing = ""
    for line in listing.splitlines():
        if line.endswith("/cbtemulator") and os.access(line, os.X_OK):
            return Path(line)
    on_path = shutil.which("cbtemulator")
    if on_path:
        return Path(on_path)
    raise StackError(
        f"Bigtable emulator not found (looked at {KNOWN_PATH}, `dpkg -L {DEB_PACKAGE}`, PATH): "
        f"install it with `apt-get install {DEB_PACKAGE}`"
    )


def _check_port_free(port: int) -> None:
    # Binding is the honest test (the emulator itself would only log the clash). SO_REUSEADDR, as
    # the emulator's own listener uses, so a just-stopped emulator's TIME_WAIT sockets don't count.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StackError(
                    f"port {port} is already in use on 127.0.0.1 (another emulator? "
                    f"see `ss -ltnp 'sport = :{port}'`)"
                ) from None
            raise StackError(f"cannot bind 127.0.0.1:{port}: {exc.strerror}") from None


def start_emulator(port: int, log_path: Path) -> int:
    """Start cbtemulator on 127.0.0.1:port in its own session (it outlives the CLI); return its pid."""
    binary = find_binary()
    _check_port_free(port)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(binary), "-host", "127.0.0.1", "-port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def wait_ready(host_port: str, timeout: float) -> None:
    """Block until the emulator answers an HTTP/2 (gRPC) handshake, or raise StackError."""
    channel = grpc.insecure_channel(host_port)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise StackError(f"Bigtable emulator at {host_port} not ready after {timeout:.0f}s") from None
    finally:
        channel.close()


def is_running(pid: int) -> bool:
    """True while the process exists and is not a zombie (a stopped, SIGSTOPped one counts)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def stop_emulator(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM (and SIGCONT, in case it was paused), SIGKILL if still there after timeout."""
    try:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        return
    if not _wait_gone(pid, timeout):
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, timeout)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_running(pid):
            _reap(pid)  # it may have turned zombie after the first try
            return True
        time.sleep(0.05)
    return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: its parent (or init) reaps it
