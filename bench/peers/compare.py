"""segstream side by side with a peer (Quix Streams) and with the framework floor, on the same
broker and the same events.

One run on one private stack (segstream.testing.LocalStack: Apache Kafka and the Bigtable
emulator on free ports): produce the events once, run the Quix Streams peer over them
(bench/peers/quix_peer.py: one process, RocksDB, segstream's Python engine per event), then
segstream's job bounded (bench/throughput.py), then the floor (bench/floor_job.py: the job's
pipeline shape with a trivial keyed counter in place of the engine), check that the peer and the
job wrote the same evaluation for every event (`rules_version` aside) and the same dead letters,
and print the rates and their ratios.

    python3.11 -m venv .segstream/peers-venv
    .segstream/peers-venv/bin/pip install -r bench/peers/requirements.txt
    .venv/bin/python bench/peers/compare.py --events 200000 --users 2000

The peer runs in its own virtualenv: Quix Streams 3.28.1 requires confluent-kafka < 2.13, which
segstream's own pin (2.16.1) excludes. Steady rates are measured the same way for both (the
output topic's end offsets twice a second, from the first output to 95 % of them); wall times
include start-up (the job's JVM and deployment, the peer's group join). CPU is that of each
one's process tree (the job's client, JVM and Python workers), sampled from /proc; the broker's
is not counted.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import msgspec
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.throughput import Run, _fresh_topics, _settings, run_job_bounded, timed_run  # noqa: E402
from segstream.config import PROJECT_ROOT, Settings  # noqa: E402
from segstream.job_process import JOB_SCRIPT  # noqa: E402
from segstream.kafka_admin import ensure_topics, read_topic, topic_configs, value_of  # noqa: E402
from segstream.produce import TrafficSpec, generate, produce_records  # noqa: E402
from segstream.testing import LocalStack, valid_event_ids  # noqa: E402

app = typer.Typer(add_completion=False)
PEER = Path(__file__).resolve().parent / "quix_peer.py"
FLOOR = Path(__file__).resolve().parents[1] / "floor_job.py"
PEER_PYTHON = PROJECT_ROOT / ".segstream" / "peers-venv" / "bin" / "python"


def evaluations_by_id(bootstrap: str, topic: str) -> tuple[dict[str, dict], int]:
    """Each event's evaluation without `rules_version` (copies of an at-least-once sink must be
    equal), and how many records the topic holds."""
    by_id: dict[str, dict] = {}
    messages = read_topic(bootstrap, topic)
    for m in messages:
        evaluation = msgspec.json.decode(value_of(m))
        evaluation.pop("rules_version", None)
        kept = by_id.setdefault(evaluation["event_id"], evaluation)
        if kept is not evaluation and kept != evaluation:
            sys.exit(f"{topic}: two different evaluations of {evaluation['event_id']}")
    return by_id, len(messages)


def dead_letters(bootstrap: str, topic: str) -> set[tuple[int, int, str]]:
    return {(d["partition"], d["offset"], d["reason"])
            for d in (msgspec.json.decode(value_of(m)) for m in read_topic(bootstrap, topic))}


def verify(settings: Settings, peer_topics: dict[str, str]) -> str:
    """Both outputs hold exactly the valid events, each with the same evaluation, and the same
    dead letters; returns a summary line, exits on any difference."""
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    valid = valid_event_ids(settings)
    job, job_records = evaluations_by_id(bootstrap, topics.evaluations)
    peer, peer_records = evaluations_by_id(bootstrap, peer_topics["evaluations"])
    for name, got in (("segstream", job), ("quix", peer)):
        if set(got) != valid:
            sys.exit(f"{name}: {len(valid - set(got))} valid events without an evaluation, "
                     f"{len(set(got) - valid)} evaluations of unknown events")
    differ = [event_id for event_id in valid if job[event_id] != peer[event_id]]
    if differ:
        first = differ[0]
        sys.exit(f"{len(differ)} evaluations differ, e.g. {first}:\n  segstream {job[first]}\n"
                 f"  quix      {peer[first]}")
    job_dead, peer_dead = dead_letters(bootstrap, topics.dead_letters), dead_letters(bootstrap, peer_topics["dead"])
    if job_dead != peer_dead:
        sys.exit(f"dead letters differ: {len(job_dead - peer_dead)} only from segstream, "
                 f"{len(peer_dead - job_dead)} only from quix")
    return (f"verified: {len(valid):,} evaluations equal event by event (rules_version aside; records written: "
            f"segstream {job_records:,}, quix {peer_records:,}), {len(job_dead)} dead letters equal")


@app.command()
def main(events: int = typer.Option(200_000, help="events to produce"),
         users: int = typer.Option(2_000, help="users they come from (Zipf-like popularity)"),
         invalid_ratio: float = typer.Option(0.0, help="share of invalid records (dead letters)"),
         seed: int = 42,
         peer_python: Path = typer.Option(PEER_PYTHON, help="the python of the peer's virtualenv"),
         keep: bool = typer.Option(False, help="keep the stack's directory (broker data, logs)"),
         peer: bool = typer.Option(True, help="run the Quix Streams peer (else job and floor only, unverified)"),
         floor: bool = typer.Option(True, help="run the framework floor (bench/floor_job.py)"),
         variant: list[str] = typer.Option([], help="also run the job with environment overrides, side by side: "
                                           "'label|VAR=value|VAR2=value' (\\n in a value is a newline), "
                                           "e.g. 'old jar|SEGSTREAM_FLINK__JOB_JAR=/tmp/old.jar'")) -> None:
    if peer and not peer_python.exists():
        sys.exit(f"{peer_python} is missing: python3.11 -m venv .segstream/peers-venv && "
                 ".segstream/peers-venv/bin/pip install -r bench/peers/requirements.txt")
    print("load average at start (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    root = Path(tempfile.mkdtemp(prefix="segstream-peers-"))
    stack = LocalStack.start(root)
    try:
        os.environ["SEGSTREAM_CONFIG"] = str(stack.config_path)
        settings = _settings(_fresh_topics(bigtable=False))  # the job's topics, created
        bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
        partitions = settings.kafka.events_partitions
        run_id = topics.events.removesuffix("-events")
        peer_topics = {name: f"{run_id}-quix-{name}" for name in ("evaluations", "dead", "expirations")}
        # The job's topic configs: retention.ms -1, or Kafka deletes the records stamped with old event times.
        ensure_topics(bootstrap, {peer_topics["evaluations"]: partitions, peer_topics["expirations"]: partitions,
                                  peer_topics["dead"]: 1}, configs=topic_configs(settings))
        produce_records(bootstrap, topics.events,
                        generate(TrafficSpec(events=events, users=users, seed=seed, invalid_ratio=invalid_ratio)),
                        total=events)

        runs: list[tuple[str, Run]] = []
        if peer:
            peer_run = timed_run([str(peer_python), str(PEER), "--bounded", "--bootstrap", bootstrap,
                                 "--input", topics.events, "--evaluations", peer_topics["evaluations"],
                                 "--dead-letters", peer_topics["dead"], "--expirations", peer_topics["expirations"],
                                 "--group", f"{run_id}-quix", "--state-dir", str(root / "quix-state"),
                                 "--stats", str(settings.path(settings.stats_file)),
                                 "--rules", str(settings.path(settings.rules_file))],
                                bootstrap, peer_topics["evaluations"], partitions, what="the quix peer",
                                log=root / "quix-peer.log")
            print(f"quix peer: {peer_run.outputs:,} evaluations in {peer_run.wall:.1f} s", file=sys.stderr)
            runs.append(("Quix Streams 3.28.1 + engine", peer_run))
        job = run_job_bounded(settings)
        print(f"segstream job: {job.outputs:,} evaluations in {job.wall:.1f} s", file=sys.stderr)
        runs.append(("segstream (Flink job)", job))
        for i, spec in enumerate(variant):
            label, *assignments = spec.split("|")
            overrides = dict(a.split("=", 1) for a in assignments)
            overrides = {k: v.replace("\\n", "\n") for k, v in overrides.items()}
            variant_topic = f"{run_id}-variant{i}-evaluations"
            ensure_topics(bootstrap, {variant_topic: partitions}, configs=topic_configs(settings))
            variant_env = {**os.environ, **overrides, "SEGSTREAM_KAFKA__TOPICS__EVALUATIONS": variant_topic,
                           "SEGSTREAM_KAFKA__GROUP_ID": f"{run_id}-variant{i}"}
            run = timed_run([sys.executable, str(JOB_SCRIPT), "--bounded"], bootstrap, variant_topic, partitions,
                            env=variant_env, what=f"the job ({label})", log=root / f"variant{i}.log")
            print(f"segstream job ({label}): {run.outputs:,} evaluations in {run.wall:.1f} s", file=sys.stderr)
            runs.append((f"job: {label}"[:32], run))
        if floor:
            # Same settings and events topic; its own output topic and consumer group.
            floor_topic = f"{run_id}-floor-evaluations"
            ensure_topics(bootstrap, {floor_topic: partitions}, configs=topic_configs(settings))
            floor_env = {**os.environ, "SEGSTREAM_KAFKA__TOPICS__EVALUATIONS": floor_topic,
                         "SEGSTREAM_KAFKA__GROUP_ID": f"{run_id}-floor"}
            floor_run = timed_run([sys.executable, str(FLOOR), "--bounded"], bootstrap, floor_topic, partitions,
                                  env=floor_env, what="the floor job", log=root / "floor-job.log")
            print(f"floor: {floor_run.outputs:,} records in {floor_run.wall:.1f} s", file=sys.stderr)
            runs.append(("floor (Flink, trivial keyed fn)", floor_run))
        summary = verify(settings, peer_topics) if peer else "not verified (no peer run)"
    finally:
        stack.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)

    f = settings.flink
    print(f"{events:,} events, {users:,} users, invalid ratio {invalid_ratio}; segstream: JVM engine, "
          f"parallelism {f.parallelism}, buffer timeout {f.buffer_timeout_ms} ms, {f.state_backend}; "
          f"quix: one process, RocksDB")
    print(summary)
    print(f"{'framework':<32} {'outputs':>9} {'steady ev/s':>12} {'wall s':>8} {'CPU s':>7} {'ev/CPU-s':>9} "
          f"{'steady CPU µs/ev':>16}")
    for name, run in runs:
        print(f"{name:<32} {run.outputs:>9,} {run.steady:>12,.0f} {run.wall:>8.1f} {run.cpu:>7.1f} "
              f"{events / run.cpu if run.cpu else float('nan'):>9,.0f} {run.steady_cpu_us:>16.1f}")
    if peer:
        print(f"ratio segstream/quix: steady {job.steady / peer_run.steady:.2f}, "
              f"wall {peer_run.wall / job.wall:.2f} (peer wall / job wall), "
              f"events per CPU-s {peer_run.cpu / job.cpu:.2f}")
    if floor:
        print(f"ratio segstream/floor: steady {job.steady / floor_run.steady:.2f}, "
              f"wall {floor_run.wall / job.wall:.2f} (floor wall / job wall), "
              f"events per CPU-s {floor_run.cpu / job.cpu:.2f}")
    if peer and floor:
        print(f"ratio floor/quix: steady {floor_run.steady / peer_run.steady:.2f}")
    print("load average at end (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    app()
