"""The Flink execution environment, configured from segstream's Settings."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import EnvironmentSettings, StreamTableEnvironment

from segstream.config import FlinkConfig, Settings
from segstream.jvm import require


def flink_configuration(settings: Settings, jars: list[Path], savepoint: str | None = None) -> Configuration:
    f = settings.flink
    config = Configuration()
    options = {
        "pipeline.jars": ";".join(p.resolve().as_uri() for p in jars),
        # The job has no Python operator; these only keep any Python process PyFlink starts
        # (e.g. `flink run -py`'s client) in this venv rather than a plain `python`.
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "execution.buffer-timeout.interval": f"{f.buffer_timeout_ms} ms",
        "state.backend.type": f.state_backend,
        "execution.checkpointing.incremental": "true",
        "execution.checkpointing.interval": f"{f.checkpoint_interval_ms} ms",
        "execution.checkpointing.timeout": f"{f.checkpoint_timeout_ms} ms",
        "execution.checkpointing.min-pause": f"{f.checkpoint_min_pause_ms} ms",
        "execution.checkpointing.dir": settings.path(f.checkpoint_dir).resolve().as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        # Bounded runs finish with a final checkpoint so their last output is committed.
        "execution.checkpointing.checkpoints-after-tasks-finish": "true",
        "pipeline.max-parallelism": str(f.max_parallelism),
        **restart_strategy(f),
        "table.exec.source.idle-timeout": f"{f.watermark_idleness_ms} ms",
    }
    if savepoint:
        options["execution.state-recovery.path"] = savepoint
    # Extra Flink options for this run, one `key: value` per line, applied last (e.g. `rest.port:
    # 8081` to reach the local MiniCluster's REST API: `segstream job stop --savepoint`).
    for line in os.environ.get("SEGSTREAM_FLINK_PROPERTIES", "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            options[key.strip()] = value.strip()
    for key, value in options.items():
        config.set_string(key, value)
    return config


def restart_strategy(f: FlinkConfig) -> dict[str, str]:
    """Flink's exponential-delay restart strategy from the flink section (config.py says why)."""
    if f.restart_attempts == 0:
        return {"restart-strategy.type": "none"}
    options = {
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": f"{f.restart_initial_backoff_ms} ms",
        "restart-strategy.exponential-delay.max-backoff": f"{f.restart_max_backoff_ms} ms",
        "restart-strategy.exponential-delay.backoff-multiplier": str(f.restart_backoff_multiplier),
        "restart-strategy.exponential-delay.jitter-factor": str(f.restart_jitter_factor),
        "restart-strategy.exponential-delay.reset-backoff-threshold": f"{f.restart_reset_threshold_ms} ms",
    }
    if f.restart_attempts is not None:
        options["restart-strategy.exponential-delay.attempts-before-reset-backoff"] = str(f.restart_attempts)
    return options


_GC_FLAG = re.compile(r"-XX:[+-]Use\w*GC\b")


def jvm_args(configured: str, given: str) -> str:
    """JVM_ARGS for the PyFlink gateway JVM, which hosts the local MiniCluster and so the operators:
    flink.jvm_args, then those already in the environment. A collector chosen in the environment
    replaces the configured one (two collectors on one command line stop the JVM)."""
    if _GC_FLAG.search(given):
        configured = _GC_FLAG.sub("", configured)
    return " ".join((configured + " " + given).split())


def create_environments(settings: Settings, jars: list[Path], savepoint: str | None = None
                        ) -> tuple[StreamExecutionEnvironment, StreamTableEnvironment]:
    # Before the first PyFlink call: the gateway JVM starts with the first one (Configuration()).
    os.environ["JVM_ARGS"] = jvm_args(settings.flink.jvm_args, os.environ.get("JVM_ARGS", ""))
    env = StreamExecutionEnvironment.get_execution_environment(flink_configuration(settings, jars, savepoint))
    env.set_parallelism(settings.flink.parallelism)
    t_env = StreamTableEnvironment.create(env, EnvironmentSettings.in_streaming_mode())
    return env, t_env


def job_arguments(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line every segstream job takes (`python jobs/<job>.py`, `flink run -py`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bounded", action="store_true",
                        help="stop at the end offsets of the input topics found when the job starts")
    parser.add_argument("--savepoint", help="start from this savepoint or retained checkpoint")
    parser.add_argument("--config", help="YAML configuration (default conf/segstream.yaml)")
    return parser.parse_args(argv)


def job_environments(settings: Settings, savepoint: str | None = None
                     ) -> tuple[StreamExecutionEnvironment, StreamTableEnvironment]:
    """create_environments with the job jar (segstream's operators and the Kafka connector, jvm/job,
    built by scripts/setup.sh) as the only entry of pipeline.jars."""
    return create_environments(settings, [require(settings.path(settings.flink.job_jar), "the job jar")], savepoint)
