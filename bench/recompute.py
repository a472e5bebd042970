"""The batch layer's recompute rate, ON THE EMULATOR (in-memory, local, 2-core box shared with other
work): events rows per second through `segstream recompute`'s Beam pipeline (DirectRunner,
multi_processing), and how it scales with Beam workers (direct_num_workers).

    .venv/bin/python bench/recompute.py --events 1000000 --users 20000 --workers 1 2

Writes the history first (the job sink's rows, through its writer outside Flink, BigtableSinkTool;
not timed with the recompute) to a fresh
emulator of its own (or --emulator HOST:PORT, fresh tables), then runs the recompute once per worker
count, and checks each run read every row and replayed every user. Prints one line per run and the
load averages before and after it (the machine is shared: read the figures with them).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from batch import pipeline  # noqa: E402
from batch.config import BatchConfig  # noqa: E402
from batch.rulelog import rules_file  # noqa: E402
from bench.bigtable_write import cpu_seconds, sink_tool_command  # noqa: E402
from operators.events import Event, encode_event  # noqa: E402
from segstream import emulator  # noqa: E402
from segstream.config import Settings  # noqa: E402
from segstream.testing import free_port  # noqa: E402
from sinks.bigtable.config import BigtableConfig  # noqa: E402
from sinks.bigtable.schema import ensure_tables  # noqa: E402

T0 = 1_767_225_600_000
NAMES = ("page_view", "page_view", "page_view", "search", "add_to_cart", "purchase", "identify")


def history(events: int, users: int, seed: int = 7):
    """(event, seq) in batches: each user's events in ts order, seq 1..n."""
    rng = random.Random(seed)
    per_user = events // users
    for u in range(users):
        user, tenant = f"u{u:07d}", ("acme" if u % 4 == 0 else "default")
        ts = T0 + rng.randrange(86_400_000)
        batch = []
        for seq in range(1, per_user + 1):
            ts += rng.randrange(1_000, 3_600_000)
            name = rng.choice(NAMES)
            values: dict = {"path": f"/p/{rng.randrange(40)}"} if name == "page_view" else {}
            if name == "purchase":
                values = {"amount": rng.randrange(100, 20_000) / 1.0}
            elif name == "identify":
                values = {"member": rng.random() < 0.5}
            elif name == "add_to_cart":
                values = {"product_id": f"p{rng.randrange(300)}"}
            batch.append((Event(f"{user}-{seq}", user, ts, name, values, tenant), seq))
        yield batch


def write_history(settings: Settings, b: BigtableConfig, events: int, users: int, work: Path) -> float:
    """Through the JVM sink's writer (BigtableSinkTool: the job's rows, cell for cell): about 20x the
    Python client's bulk mutations on this box. Profiles get a placeholder evaluation (no --report)."""
    lines = work / "history.jsonl"
    with lines.open("wb") as f:
        for user_events in history(events, users):
            for e, seq in user_events:
                evaluation = {"event_id": e.event_id, "tenant": e.tenant, "user_id": e.user_id, "ts": e.ts,
                              "seq": seq, "stats": {}, "segments": [], "rules_version": 0}
                f.write(orjson.dumps([encode_event(e).decode(), orjson.dumps(evaluation).decode()]) + b"\n")
    started = time.monotonic()
    with lines.open("rb") as stdin:
        subprocess.run(sink_tool_command(settings, b), stdin=stdin, capture_output=True, check=True)
    lines.unlink()
    return time.monotonic() - started


def breakdown(b: BigtableConfig, rules: pipeline.Rules, fraction: float) -> None:
    """Where the time goes, in this one process and without Beam, over the first `fraction` of the
    prefix space: the read alone (Bigtable client and emulator), then the read and the replay."""
    from batch.history import Reader, prefix_ranges
    from batch.replay import replay_user

    history = rules.history()
    for label, replay in (("read only", False), ("read + replay", True)):
        reader = Reader(b)
        started, cpu, rows = time.monotonic(), own_cpu_seconds(), 0
        for r in prefix_ranges(b.hash_prefix_hex, 4, fraction):
            for (tenant, user), user_rows, _ in reader.users(r):
                rows += len(user_rows)
                if replay:
                    replay_user(tenant, user, user_rows, history)
        reader.close()
        seconds, cpu = time.monotonic() - started, own_cpu_seconds() - cpu
        print(f"in one process, no Beam, {label}: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s, "
              f"{cpu / rows * 1e6:.0f} µs CPU/row in this process; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)


def own_cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (the Beam worker processes)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--key-ranges", type=int, default=16)
    parser.add_argument("--breakdown", type=float, default=0.0,
                        help="then time the read and the replay without Beam over this share of the users (0-1)")
    parser.add_argument("--emulator", help="host:port of a running emulator (default: a fresh one of its own)")
    args = parser.parse_args()

    pid = None
    host = args.emulator
    if host is None:
        port = free_port()
        pid = emulator.start_emulator(port, Path(tempfile.mkdtemp()) / "cbtemulator.log")
        host = f"127.0.0.1:{port}"
        emulator.wait_ready(host, timeout=30)
    try:
        suffix = str(os.getpid())
        b = BigtableConfig(emulator_host=host, events_table=f"bench-events-{suffix}",
                           profiles_table=f"bench-profiles-{suffix}")
        ensure_tables(b)
        rows = args.events // args.users * args.users
        settings = Settings()
        seconds = write_history(settings, b, args.events, args.users, Path(tempfile.mkdtemp()))
        print(f"history: {rows:,} events rows of {args.users:,} users written in {seconds:.0f} s "
              f"({rows / seconds:,.0f} rows/s)", flush=True)
        catalogue = __import__("yaml").safe_load(settings.path(settings.stats_file).read_text())
        rules = pipeline.Rules(catalogue, rules_file(settings.path(settings.rules_file)), [])
        for workers in args.workers:
            before = os.getloadavg()
            cpu_before = own_cpu_seconds()
            emulator_before = cpu_seconds(pid) if pid else float("nan")
            with tempfile.TemporaryDirectory() as out:
                result = pipeline.run(b, BatchConfig(key_ranges=args.key_ranges, progress_interval_s=30), rules,
                                      pipeline.Selection(), Path(out), workers=workers)
                profiles = sum(1 for _ in result.lines("profiles"))
            after = os.getloadavg()
            cpu = own_cpu_seconds() - cpu_before
            emulator_cpu = (cpu_seconds(pid) if pid else float("nan")) - emulator_before
            assert result.rows == rows and profiles == args.users, (result.rows, profiles)
            # CPU per event does not depend on what else the machine runs; the rate does.
            print(f"workers={workers}: {rows:,} rows, {args.users:,} users in {result.seconds:.1f} s = "
                  f"{rows / result.seconds:,.0f} events/s; CPU {cpu / rows * 1e6:.0f} µs/event in the driver and "
                  f"the Beam workers, {emulator_cpu / rows * 1e6:.0f} µs/event in the emulator; load average "
                  f"before {before[0]:.1f} {before[1]:.1f} {before[2]:.1f}, after {after[0]:.1f} {after[1]:.1f} "
                  f"{after[2]:.1f}", flush=True)
        if args.breakdown:
            breakdown(b, rules, args.breakdown)
    finally:
        if pid is not None:
            emulator.stop_emulator(pid)


if __name__ == "__main__":
    main()
