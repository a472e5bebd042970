"""End-to-end benchmark of jobs/user_stats.py on the local stack (Apache Kafka + MiniCluster).

backlog mode: produce N events, run the job bounded, sample the evaluations topic's end offsets
once a second; report the steady-state rate (first to last evaluation, so JVM and job start-up are
excluded) and the wall time.
latency mode: run the job unbounded, produce at a fixed rate with wall-clock record timestamps,
and report produce-to-evaluation latency percentiles (seen by a consumer of `evaluations`).

    .venv/bin/segstream stack up
    .venv/bin/python bench/throughput.py backlog --events 200000 --users 2000
    .venv/bin/python bench/throughput.py backlog --events 200000 --users 2000 --job both   # + jobs/user_stats_jvm.py
    .venv/bin/python bench/throughput.py latency --rate 1000 --seconds 60
Flink settings come from conf/ and SEGSTREAM_FLINK__* variables (execution mode, bundle size...).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import msgspec
import typer
from confluent_kafka import Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segstream.config import PROJECT_ROOT, load_settings  # noqa: E402
from segstream.job_process import JOB_SCRIPT, JVM_JOB_SCRIPT  # noqa: E402
from segstream.kafka_admin import end_offsets, ensure_topics, topic_configs, topic_plan  # noqa: E402
from segstream.produce import Record, TrafficSpec, generate, produce_records  # noqa: E402
from segstream.testing import wait_for  # noqa: E402

app = typer.Typer(add_completion=False)
JOB = JOB_SCRIPT
JVM_JOB = JVM_JOB_SCRIPT


def _fresh_topics(bigtable: bool) -> dict[str, str]:
    """Environment overrides that give this run its own topics (and tables)."""
    run = f"bench-{uuid.uuid4().hex[:8]}"
    env = {f"SEGSTREAM_KAFKA__TOPICS__{name.upper()}": f"{run}-{name}"
           for name in ("events", "evaluations", "dead_letters", "rules", "expirations")}
    env["SEGSTREAM_BIGTABLE__ENABLED"] = "true" if bigtable else "false"
    env["SEGSTREAM_BIGTABLE__EVENTS_TABLE"] = f"{run}-events"
    env["SEGSTREAM_BIGTABLE__PROFILES_TABLE"] = f"{run}-profiles"
    return env


def _settings(env: dict[str, str]):
    os.environ.update(env)
    settings = load_settings()
    ensure_topics(settings.kafka.bootstrap_servers, topic_plan(settings), configs=topic_configs(settings))
    if settings.bigtable.enabled:
        from sinks.bigtable.schema import ensure_tables

        ensure_tables(settings.bigtable)
    return settings


def _job_scripts(job: str, bigtable: bool) -> dict[str, Path]:
    """`--job`: python (jobs/user_stats.py), jvm (jobs/user_stats_jvm.py) or both, in that order."""
    if job not in ("python", "jvm", "both"):
        sys.exit(f"--job must be python, jvm or both, not {job!r}")
    if job != "python" and bigtable:
        sys.exit("the JVM job has no Bigtable sink yet: run it without --bigtable")
    scripts = {"python": JOB, "jvm": JVM_JOB}
    return scripts if job == "both" else {job: scripts[job]}


def _fresh_outputs(run: str) -> None:
    """Own output topics (and rules topic) for one more job over the same events topic."""
    for name in ("evaluations", "dead_letters", "rules", "expirations"):
        os.environ[f"SEGSTREAM_KAFKA__TOPICS__{name.upper()}"] = f"{run}-{name}"


@app.command()
def backlog(events: int = 200_000, users: int = 2_000, bigtable: bool = False,
            job: str = typer.Option("python", help="python, jvm (jobs/user_stats_jvm.py, no Bigtable) or both "
                                                   "(each over the same events topic)")):
    scripts = _job_scripts(job, bigtable)
    settings = _settings(_fresh_topics(bigtable))
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    produce_records(bootstrap, topics.events, generate(TrafficSpec(events=events, users=users, invalid_ratio=0)),
                    total=events)
    for index, (name, script) in enumerate(scripts.items()):
        if index:
            _fresh_outputs(f"{topics.events}-{name}")
            settings = _settings({})
        print(f"job={name} ({script.relative_to(PROJECT_ROOT)})")
        _measure_backlog(settings, script, events)


def _measure_backlog(settings, script: Path, events: int) -> None:
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    samples: list[tuple[float, int]] = []
    done = threading.Event()
    # The partitions' high watermarks: cheap, and exact for the at-least-once sink.
    watermarks = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-sampler"})
    partitions = [TopicPartition(topics.evaluations, p) for p in range(settings.kafka.events_partitions)]

    def sample():
        while not done.is_set():
            try:
                high = sum(watermarks.get_watermark_offsets(tp, timeout=2)[1] for tp in partitions)
                samples.append((time.monotonic(), high))
            except Exception:  # the topic may answer slowly while the job starts; the next sample counts
                pass
            done.wait(0.5)

    started = time.monotonic()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = subprocess.run([sys.executable, str(script), "--bounded"], env=os.environ.copy(), cwd=PROJECT_ROOT,
                            capture_output=True, text=True)
    wall = time.monotonic() - started
    done.set()
    sampler.join()
    if result.returncode != 0:
        sys.exit(f"job failed:\n{result.stderr[-3000:]}")
    watermarks.close()
    total = sum(end_offsets(bootstrap, topics.evaluations).values())
    # Steady state: from the first evaluations out to 95 % of them (the tail is batch-granular).
    moving = [(t, n) for t, n in samples if n > 0]
    first_t, first_n = moving[0] if moving else (started, 0)
    last_t, last_n = next(((t, n) for t, n in moving if n >= 0.95 * total), moving[-1] if moving else (started, 0))
    steady = (last_n - first_n) / (last_t - first_t) if last_t > first_t else float("nan")
    f = settings.flink
    print(f"mode={f.execution_mode} parallelism={f.parallelism} bundle={f.bundle_size}/{f.bundle_time_ms}ms "
          f"bigtable={settings.bigtable.enabled}")
    print(f"events={events} evaluations={total} wall={wall:.1f}s (start-up included) "
          f"end-to-end={events / wall:,.0f} ev/s steady-state={steady:,.0f} ev/s")


@app.command()
def latency(rate: float = 1_000, seconds: float = 60, users: int = 2_000, bigtable: bool = False):
    settings = _settings(_fresh_topics(bigtable))
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    job = subprocess.Popen([sys.executable, str(JOB)], env=os.environ.copy(), cwd=PROJECT_ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # fetch.wait.max.ms: the reader must not add its own wait (the broker may hold a fetch that long).
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-latency", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 10})
    consumer.assign([TopicPartition(topics.evaluations, p, 0) for p in range(settings.kafka.events_partitions)])
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    stop = threading.Event()

    def consume():
        while not stop.is_set():
            for m in consumer.consume(1000, 0.2):
                if m.error():
                    continue
                event_id = msgspec.json.decode(m.value())["event_id"]
                if event_id in sent_at:
                    latencies.append((time.time() - sent_at[event_id]) * 1000)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    try:
        # The job's start-up is not latency: one warm-up event, and the clock runs once it is evaluated.
        warm_up = next(iter(generate(TrafficSpec(events=1, users=1, invalid_ratio=0, seed=-1))))
        sent_at[msgspec.json.decode(warm_up.value)["event_id"]] = time.time()
        produce_records(bootstrap, topics.events, [warm_up], progress=False)
        wait_for(lambda: latencies or job.poll() is not None, 300, "the warm-up event's evaluation", 0.2)
        if job.poll() is not None:
            sys.exit(f"the job exited with {job.returncode} before the warm-up event was evaluated")
        latencies.clear()
        count = int(rate * seconds)

        def stamped():
            for record in generate(TrafficSpec(events=count, users=users, invalid_ratio=0)):
                event = msgspec.json.decode(record.value)
                sent_at[event["event_id"]] = time.time()
                yield Record(record.key, record.value, int(time.time() * 1000))

        produce_records(bootstrap, topics.events, stamped(), rate=rate, total=count)
        deadline = time.monotonic() + 60
        while len(latencies) < count and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        stop.set()
        reader.join()
        job.terminate()
        job.wait(30)
    if not latencies:
        sys.exit("no evaluations arrived")
    q = statistics.quantiles(latencies, n=100)
    print(f"rate={rate:,.0f} ev/s for {seconds:.0f}s: {len(latencies)}/{count} evaluated; latency ms "
          f"p50={q[49]:.0f} p95={q[94]:.0f} p99={q[98]:.0f} max={max(latencies):.0f}")


if __name__ == "__main__":
    app()
