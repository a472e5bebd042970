"""Thin pytest fixtures over segstream/testing.py: a real local stack (broker, emulator) on free
ports for the integration tests, and a config of it per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from segstream.config import Settings
from segstream.testing import LocalStack, isolated_config


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory) -> LocalStack:
    stack = LocalStack.start(tmp_path_factory.mktemp("stack"), checkpoint_interval_ms=2000)
    yield stack
    stack.stop()


@pytest.fixture
def job_config(local_stack: LocalStack, tmp_path, request) -> tuple[Settings, Path]:
    """A config of the session stack with this test's own topics (and checkpoint directory)."""
    prefix = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")
    path = tmp_path / "segstream.yaml"
    return isolated_config(local_stack.config_path, path, prefix, tmp_path / "checkpoints"), path
