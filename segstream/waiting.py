"""Waiting on a condition instead of sleeping: `wait_for` polls until it holds, with a timeout and an
optional early abort. Used by the cluster and job-control code and by segstream/testing.py."""

from __future__ import annotations

import time
from collections.abc import Callable

from segstream.errors import StackError


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
