"""Produce-to-evaluation latency of the job under several settings, side by side on one private
stack (segstream.testing.LocalStack): bench/throughput.py's `latency` once per variant, each with
its own topics and its own job process, one after the other.

    .venv/bin/python bench/latency_matrix.py --rate 5000 --seconds 40

Variants are environment overrides of the job's settings (SEGSTREAM_* variables, docs in
segstream/config.py); add your own with --variant 'label|VAR=value|VAR2=value'.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import throughput  # noqa: E402
from segstream.testing import LocalStack  # noqa: E402

app = typer.Typer(add_completion=False)

DEFAULT_VARIANTS = [
    "default (at-least-once, buffer timeout 5 ms, producer defaults)",
    "tuned: linger.ms 0, fetch.max.wait.ms 10|SEGSTREAM_KAFKA__SINK_PROPERTIES={\"linger.ms\": \"0\"}"
    "|SEGSTREAM_KAFKA__SOURCE_PROPERTIES={\"fetch.max.wait.ms\": \"10\"}",
    "tuned + buffer timeout 1 ms|SEGSTREAM_FLINK__BUFFER_TIMEOUT_MS=1|SEGSTREAM_KAFKA__SINK_PROPERTIES="
    "{\"linger.ms\": \"0\"}|SEGSTREAM_KAFKA__SOURCE_PROPERTIES={\"fetch.max.wait.ms\": \"10\"}",
    "exactly-once, read_committed reader (checkpoint 10 s)|SEGSTREAM_KAFKA__DELIVERY_GUARANTEE=exactly-once"
    "|isolation=read_committed",
]


@app.command()
def main(rate: float = 5_000, seconds: float = 40, users: int = 2_000,
         variant: list[str] = typer.Option([], help="'label|VAR=value|...' (default: the built-in list)")) -> None:
    print("load average at start (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    root = Path(tempfile.mkdtemp(prefix="segstream-latency-"))
    stack = LocalStack.start(root)
    base = dict(os.environ)
    try:
        for spec in variant or DEFAULT_VARIANTS:
            label, *assignments = spec.split("|")
            overrides = dict(a.split("=", 1) for a in assignments)
            isolation = overrides.pop("isolation", "read_uncommitted")
            os.environ.clear()
            os.environ.update({**base, "SEGSTREAM_CONFIG": str(stack.config_path), **overrides})
            print(f"\n== {label}  (load average {', '.join(f'{x:.2f}' for x in os.getloadavg())})", flush=True)
            try:
                throughput.latency(rate=rate, seconds=seconds, users=users, bigtable=False, isolation=isolation)
            except SystemExit as e:
                print(f"failed: {e}")
            sys.stdout.flush()
    finally:
        os.environ.clear()
        os.environ.update(base)
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    print("load average at end (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    app()
