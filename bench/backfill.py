"""The backfill's rate (`segstream backfill`, docs/batch.md 6), ON THE EMULATOR (in-memory, local,
2-core box shared with other work): users/s and history rows/s rebuilt into a new savepoint.

    .venv/bin/python bench/backfill.py --events 40000 --users 4000 --parallelism 1 2

Sets up what an operator has before a backfill, with the real components: a private stack
(broker, emulator), the job (MiniCluster, Bigtable mirror on) run over the traffic and stopped with
a savepoint once every event is evaluated (not timed). Then runs the backfill to a catalogue with a
stat added, a session gap and a window changed, once per --parallelism, and prints one line per
run with the load averages before and after it (read the figures with them), the outcomes, and the
size of the savepoints.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from batch.backfill import BackfillOptions, run  # noqa: E402
from segstream.job_process import JobProcess  # noqa: E402
from segstream.produce import TrafficSpec, generate, produce_records  # noqa: E402
from segstream.testing import (  # noqa: E402
    FAST_JVM,
    LocalStack,
    TopicWatcher,
    events_by_user,
    stop_with_savepoint,
    valid_ids_of,
    wait_for,
)


def v2_catalogue(out: Path) -> Path:
    """conf/stats.yaml with a stat added, the session gap 30m -> 10m, page_views_1h's window 1h -> 2h."""
    stats = yaml.safe_load((ROOT / "conf" / "stats.yaml").read_text())
    for spec in stats["stats"]:
        if spec["name"] == "sessions":
            spec["gap"] = "10m"
        if spec["name"] == "page_views_1h":
            spec["window"] = "2h"
    stats["stats"].append({"name": "devices_seen", "agg": "distinct", "event": "page_view", "field": "device"})
    out.write_text(yaml.safe_dump(stats, sort_keys=False))
    return out


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--users", type=int, default=4_000)
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        work = Path(tmp)
        stack = LocalStack.start(work)
        try:
            settings = stack.settings
            records = list(generate(TrafficSpec(events=args.events, users=args.users, seed=5, tenants=2)))
            produce_records(settings.kafka.bootstrap_servers, settings.kafka.topics.events, records, progress=False)
            wanted = valid_ids_of(records)
            users = len(events_by_user(records)[0])  # the generator draws from --users: fewer appear
            watcher = TopicWatcher(settings.kafka.bootstrap_servers, settings.kafka.topics.evaluations)
            started = time.monotonic()
            job = JobProcess.start(stack.config_path, [], work / "job.log", env={"JVM_ARGS": FAST_JVM},
                                   flink_log_dir=work / "flink-log")
            try:
                wait_for(lambda: wanted <= watcher.event_ids, 1_800, f"{len(wanted)} evaluations", 0.5,
                         abort=job.exit_reason)
                savepoint = stop_with_savepoint(job, None, work / "savepoints")
            finally:
                watcher.close()
                if job.running():
                    job.kill()
            saved = size_mb(Path(savepoint.removeprefix("file:")))
            print(f"job: {len(wanted):,} events of {users:,} users evaluated and mirrored in "
                  f"{time.monotonic() - started:.0f} s, stopped with a savepoint ({saved:.1f} MB)")
            stats = v2_catalogue(work / "stats-v2.yaml")
            for run_index, parallelism in enumerate(args.parallelism):
                out = work / f"backfilled-{run_index}-p{parallelism}"
                before = load()
                t = time.monotonic()
                summary = run(settings, BackfillOptions(savepoint=savepoint, stats_file=stats, out=str(out),
                                                        parallelism=parallelism, progress_interval_s=10),
                              progress=sys.stderr)
                wall = time.monotonic() - t
                seconds = summary["seconds"]
                print(f"backfill parallelism {parallelism}: {summary['users']:,} users, {summary['rows']:,} rows in "
                      f"{seconds:.1f} s inside the JVM ({summary['users'] / seconds:,.0f} users/s, "
                      f"{summary['rows'] / seconds:,.0f} rows/s), {wall:.1f} s with the JVM start; "
                      f"from the first user rebuilt to the last {summary['rebuild_seconds']:.1f} s "
                      f"({summary['users'] / max(summary['rebuild_seconds'], 1e-9):,.0f} users/s, "
                      f"{summary['rows'] / max(summary['rebuild_seconds'], 1e-9):,.0f} rows/s; subtasks' wall time in "
                      f"Bigtable reads {summary['read_seconds']:.1f} s, in the replay "
                      f"{summary['replay_seconds']:.1f} s); "
                      f"outcomes {summary['outcomes']}; new savepoint {size_mb(out):.1f} MB; "
                      f"load average before {before}, after {load()}")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
