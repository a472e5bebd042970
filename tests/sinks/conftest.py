"""Fixtures of the Bigtable sink tests: an emulator of each test module's own."""

from __future__ import annotations

import os
import signal

import pytest

from segstream import emulator
from segstream.testing import free_port


@pytest.fixture(scope="module")
def bigtable_emulator(tmp_path_factory):
    """(host:port, pid) of an emulator of this module's own."""
    port = free_port()
    pid = emulator.start_emulator(port, tmp_path_factory.mktemp("emulator") / "cbtemulator.log")
    try:
        emulator.wait_ready(f"127.0.0.1:{port}", timeout=20)
        yield f"127.0.0.1:{port}", pid
    finally:
        os.kill(pid, signal.SIGCONT)  # a test that pauses it (SIGSTOP) may have failed while it was paused
        emulator.stop_emulator(pid)
