"""A real local stack (broker, emulator) on free ports for the integration tests, and helpers to
run the job as `flink run` would: a separate process with its own JVM."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from segstream.config import PROJECT_ROOT, Settings, load_settings
from segstream.stack import Stack

JOB = PROJECT_ROOT / "jobs" / "user_stats.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalStack:
    settings: Settings
    config_path: Path
    stack: Stack

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka.bootstrap_servers


def write_config(path: Path, overrides: dict) -> Settings:
    path.write_text(yaml.safe_dump(overrides))
    return load_settings(path)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory) -> LocalStack:
    state = tmp_path_factory.mktemp("stack")
    broker_port, emulator_port = free_port(), free_port()
    config = {
        "kafka": {"bootstrap_servers": f"127.0.0.1:{broker_port}"},
        "bigtable": {"emulator_host": f"127.0.0.1:{emulator_port}"},
        "stack": {"state_dir": str(state), "broker_port": broker_port, "emulator_port": emulator_port},
        # Share the project's jar cache: the jars are pinned by SHA-256 either way.
        "flink": {"checkpoint_dir": str(state / "checkpoints"), "checkpoint_interval_ms": 2000},
    }
    path = state / "segstream.yaml"
    settings = write_config(path, config)
    stack = Stack(settings)
    stack.up()
    yield LocalStack(settings, path, stack)
    stack.down()


def run_job(config_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the job to completion (bounded) in its own process; fail with its output on error."""
    env = {**os.environ, "SEGSTREAM_CONFIG": str(config_path)}
    result = subprocess.run([sys.executable, str(JOB), "--bounded", *args], env=env, cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"job failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


def isolated_config(base: Path, out: Path, prefix: str, checkpoint_dir: Path) -> Settings:
    """`base` with its own topics, Bigtable tables and checkpoint directory, written to `out`;
    the topics and tables are created."""
    from segstream.kafka_admin import ensure_topics, topic_plan

    data = yaml.safe_load(base.read_text())
    data["kafka"]["topics"] = {k: f"{prefix}-{v}" for k, v in load_settings(base).kafka.topics.model_dump().items()}
    data.setdefault("flink", {})["checkpoint_dir"] = str(checkpoint_dir)
    data.setdefault("bigtable", {})["events_table"] = f"{prefix}-events"
    data["bigtable"]["profiles_table"] = f"{prefix}-profiles"
    settings = write_config(out, data)
    ensure_topics(settings.kafka.bootstrap_servers, topic_plan(settings))
    if settings.bigtable.enabled:
        from sinks.bigtable.schema import ensure_tables

        ensure_tables(settings.bigtable)
    return settings


@pytest.fixture
def job_config(local_stack: LocalStack, tmp_path, request) -> tuple[Settings, Path]:
    """A config of the session stack with this test's own topics (and checkpoint directory)."""
    prefix = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")
    path = tmp_path / "segstream.yaml"
    return isolated_config(local_stack.config_path, path, prefix, tmp_path / "checkpoints"), path
