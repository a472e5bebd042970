"""Chaos runs: the crash test of tests/integration/test_recovery.py, N times, with random kill points
(the crash harness of segstream/testing.py).

Each run gets its own topics, tables and checkpoint directory on a private local stack (broker and
Bigtable emulator on free ports, stopped at the end), the same kind of traffic as the tests (6,000
events, 300 users, 2 tenants, 0.5 % invalid), and then

  minicluster (default): runs the job on live traffic (unbounded; 500 events first, the rest at
      600 events/s once the job writes its first evaluation: testing.feed_while_running; or,
      with --backlog, bounded over the whole input produced first), kill -9s its whole process
      group (client, JVM, Python workers) after a checkpoint completed, once a random share
      (5-95 %) of the evaluations still to come after that checkpoint is out (testing.KillPoint),
      restarts it from the latest retained checkpoint, and stops it with a savepoint once every
      event is evaluated and in every sink;
  --taskmanager: submits it with `flink run -py ... --bounded` (backlog) to a standalone cluster,
      kill -9s the TaskManager at such a point and starts a new one; the JobManager restarts the
      job itself;

and checks every output against a recomputation from the input (check_results; with exactly-once
in the read_committed view, where every evaluation must appear exactly once). Prints one row per
run and a summary:

    .venv/bin/python bench/chaos.py --runs 20
    .venv/bin/python bench/chaos.py --runs 10 --guarantee exactly-once [--naming POOLING]
    .venv/bin/python bench/chaos.py --runs 5 --taskmanager

kill point = seconds from the start (or submission) to the kill / evaluations out at the kill;
chk = the checkpoint restored (MiniCluster) or current at the kill (TaskManager);
recovery = restart (MiniCluster) or kill (TaskManager) to the first new evaluation written (with
exactly-once also: to the first new evaluation committed, i.e. visible to read_committed);
complete = restart or kill to the last event evaluated; load = 5-minute load average after the run
(on a shared machine every time scales with it). OK = exact after a kill mid-stream; LATE = exact,
but the kill came after a checkpoint covered the whole input (nothing to redo); NO KILL = the job
finished before the kill point.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import typer

# Google's client libraries warn about Python/grpcio support windows on every import.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segstream.cluster import Cluster, ClusterOptions  # noqa: E402
from segstream.errors import StackError  # noqa: E402
from segstream.produce import produce_records  # noqa: E402
from segstream.testing import (  # noqa: E402
    FAST_JVM,
    LocalStack,
    check_results,
    crash_and_recover,
    crash_config,
    crash_taskmanager,
    feed_while_running,
    free_port,
    isolated_config,
    traffic,
    valid_ids_of,
)

app = typer.Typer(add_completion=False)


def run_config(base: Path, run_dir: Path, name: str) -> Path:
    """The stack's config with this run's own topics, tables and checkpoint directory."""
    path = run_dir / "segstream.yaml"
    isolated_config(base, path, name, run_dir / "checkpoints")
    return path


@app.command()
def main(
    runs: int = typer.Option(20, help="How many crash runs."),
    seed: int = typer.Option(100, help="Seed of the first run (traffic and kill point); then +1 per run."),
    taskmanager: bool = typer.Option(False, help="Kill the TaskManager of a standalone cluster instead."),
    keep: bool = typer.Option(False, help="Keep the working directory (logs) even when every run passed."),
    fast_jvm: bool = typer.Option(False, help="C1-only JVMs, as the tests use (faster start, not production)."),
    backlog: bool = typer.Option(False, help="MiniCluster: produce all input first and run bounded."),
    guarantee: str = typer.Option("at-least-once", help="kafka.delivery_guarantee: at-least-once | exactly-once."),
    naming: str = typer.Option("INCREMENTING", help="kafka.transaction_naming_strategy (exactly-once): "
                                                    "INCREMENTING | POOLING."),
):
    root = Path(tempfile.mkdtemp(prefix="segstream-chaos-"))
    print(f"working directory {root}", flush=True)
    stack = LocalStack.start(root, state_dir=root / "stack")
    base = stack.config_path
    cluster = None
    rows: list[tuple] = []
    try:
        if taskmanager:
            cluster = Cluster(stack.settings, ClusterOptions(rest_port=free_port(), rpc_port=free_port(),
                                                             extra_java_opts=FAST_JVM if fast_jvm else ""))
            cluster.up()
        header = (f"{'run':>3}  {'seed':>4}  {'kill point':>18}  {'chk':>7}  {'recovery':>8}  {'complete':>8}  "
                  f"{'load':>4}  result")
        print(header, flush=True)
        for i in range(runs):
            run_seed = seed + i
            run_dir = root / f"run-{i:02d}"
            run_dir.mkdir()
            started = time.monotonic()
            config_path = run_config(base, run_dir, f"chaos-{i:02d}")
            settings, config_path = crash_config(config_path, run_dir / "crash.yaml", delivery_guarantee=guarantee,
                                                 transaction_naming_strategy=naming)
            records = traffic(run_seed)
            valid_ids = valid_ids_of(records)
            live = cluster is None and not backlog
            if live:
                feed = feed_while_running(settings, records)
            else:
                produce_records(settings.kafka.bootstrap_servers, settings.kafka.topics.events, records,
                                progress=False)
            run = None
            try:
                if cluster is not None:
                    run = crash_taskmanager(cluster, settings, config_path, run_dir, run_seed, valid_ids,
                                            fraction=(0.05, 0.95))
                else:
                    run = crash_and_recover(settings, config_path, run_dir, run_seed, valid_ids,
                                            fraction=(0.05, 0.95), jvm_args=FAST_JVM if fast_jvm else "",
                                            bounded=not live)
                if live:
                    feed.join(60)
                exactly_once = guarantee == "exactly-once"
                counts = check_results(settings, committed_only=True, exactly_once=exactly_once)
                if exactly_once:
                    result = (f"{'OK' if run.mid_stream else 'LATE'} ({run.committed_at_end}/{len(valid_ids)} "
                              f"committed, {counts['duplicates']} duplicates; first commit "
                              f"{run.committed_recovery_s}s after restart)")
                else:
                    result = f"{'OK' if run.mid_stream else 'LATE'} ({counts['duplicates']} replayed)"
            except StackError as exc:
                # The job ended before the kill point (a late target): no crash happened.
                first = str(exc).splitlines()[0]
                result = "NO KILL" if "exited with 0" in first else f"FAIL: {first[:200]}"
            except AssertionError as exc:
                result = f"FAIL: {str(exc).splitlines()[0][:200] if str(exc) else 'assertion'}"
                (run_dir / "failure.txt").write_text(traceback.format_exc())
            kill = f"{run.killed_after_s:6.1f}s / {run.evaluations_at_kill:5d}" if run else "-"
            chk = run.checkpoint if run else "-"
            recovery = f"{run.recovery_s:7.1f}s" if run and run.recovery_s is not None else "-"
            complete = f"{run.second_run_s:7.1f}s" if run else "-"
            rows.append((i, run, result))
            load = os.getloadavg()[1]  # the machine's 5-minute load average: the figures scale with it
            print(f"{i:>3}  {run_seed:>4}  {kill:>18}  {chk:>7}  {recovery:>8}  {complete:>8}  {load:4.1f}  {result}"
                  f"   [{time.monotonic() - started:.0f}s]", flush=True)
    finally:
        if cluster is not None:
            cluster.down()
        stack.stop()

    ok = [run for _, run, result in rows if result.startswith("OK")]
    late = [i for i, _, result in rows if result.startswith("LATE")]
    failed = [i for i, _, result in rows if result.startswith("FAIL")]
    recoveries = [run.recovery_s for run in ok if run.recovery_s is not None]
    committed = [run.committed_recovery_s for run in ok if run.committed_recovery_s is not None]
    print(f"\n{len(ok)} OK, {len(late)} LATE, {len(failed)} FAIL, "
          f"{len(rows) - len(ok) - len(late) - len(failed)} NO KILL of {len(rows)} runs ({guarantee}"
          f"{', ' + naming if guarantee == 'exactly-once' else ''})")
    if recoveries:
        print(f"recovery (to the first new evaluation): median {statistics.median(recoveries):.1f}s, "
              f"min {min(recoveries):.1f}s, max {max(recoveries):.1f}s")
    if committed:
        print(f"recovery (to the first new committed evaluation): median {statistics.median(committed):.1f}s, "
              f"min {min(committed):.1f}s, max {max(committed):.1f}s")
    if failed or keep:
        print(f"logs kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    raise typer.Exit(1 if failed else 0)


if __name__ == "__main__":
    app()
