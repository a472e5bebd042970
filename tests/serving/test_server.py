"""serve's worker processes: each one an instance with a reply topic of its own."""

from __future__ import annotations

import os

import pytest

from serving.server import WORKERS_ENV, app_factory


@pytest.mark.parametrize(("workers", "configured", "expected"), [
    ("1", "front-1", "front-1"),
    ("4", "front-1", f"front-1-{os.getpid()}"),
    ("4", None, None),  # the default id has the pid already
])
def test_each_worker_has_its_own_reply_topic(monkeypatch: pytest.MonkeyPatch, workers: str, configured: str | None,
                                             expected: str | None) -> None:
    monkeypatch.setenv(WORKERS_ENV, workers)
    if configured:
        monkeypatch.setenv("SEGSTREAM_SERVING__INSTANCE_ID", configured)
    else:
        monkeypatch.delenv("SEGSTREAM_SERVING__INSTANCE_ID", raising=False)
    front = app_factory().state.front
    assert front.instance == (expected or front.instance)
    assert str(os.getpid()) in front.instance or workers == "1"
    assert front.reply_topic == front.settings.serving.reply_topic_prefix + front.instance
