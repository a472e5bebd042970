"""End-to-end benchmark of jobs/user_stats.py on the local stack (Apache Kafka + MiniCluster).

backlog mode: produce N events, run the job bounded, sample the evaluations topic's end offsets
once a second; report the steady-state rate (first to last evaluation, so JVM and job start-up are
excluded) and the wall time.
latency mode: run the job unbounded, produce at a fixed rate with wall-clock record timestamps,
and report produce-to-evaluation latency percentiles (seen by a consumer of `evaluations`).

    .venv/bin/segstream stack up
    .venv/bin/python bench/throughput.py backlog --events 200000 --users 2000
    .venv/bin/python bench/throughput.py latency --rate 1000 --seconds 60
    .venv/bin/python bench/throughput.py window-cost --events 100000 --rounds 3
    .venv/bin/python bench/throughput.py pii-cost --events 100000 --rounds 2
window-cost mode: the main job's steady rate over one backlog with its window branch off and on
(`windows.enabled`), alternating, in one session.
Flink settings come from conf/ and SEGSTREAM_FLINK__* variables (execution mode, bundle size...).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgspec
import typer
from confluent_kafka import Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segstream.config import PROJECT_ROOT, load_settings  # noqa: E402
from segstream.job_process import JOB_SCRIPT  # noqa: E402
from segstream.kafka_admin import end_offsets, ensure_topics, per_topic_configs, topic_configs, topic_plan  # noqa: E402
from segstream.produce import Record, TrafficSpec, generate, produce_records  # noqa: E402
from segstream.testing import wait_for  # noqa: E402

app = typer.Typer(add_completion=False)
JOB = JOB_SCRIPT


def _fresh_topics(bigtable: bool) -> dict[str, str]:
    """Environment overrides that give this run its own topics (and tables)."""
    run = f"bench-{uuid.uuid4().hex[:8]}"
    env = {f"SEGSTREAM_KAFKA__TOPICS__{name.upper()}": f"{run}-{name}"
           for name in ("events", "evaluations", "dead_letters", "rules", "expirations", "aggregates", "alerts",
                         "late_events")}
    env["SEGSTREAM_BIGTABLE__ENABLED"] = "true" if bigtable else "false"
    env["SEGSTREAM_BIGTABLE__EVENTS_TABLE"] = f"{run}-events"
    env["SEGSTREAM_BIGTABLE__PROFILES_TABLE"] = f"{run}-profiles"
    return env


def _settings(env: dict[str, str]):
    os.environ.update(env)
    settings = load_settings()
    ensure_topics(settings.kafka.bootstrap_servers, topic_plan(settings), configs=topic_configs(settings),
                  per_topic=per_topic_configs(settings))
    if settings.bigtable.enabled:
        from sinks.bigtable.schema import ensure_tables

        ensure_tables(settings.bigtable)
    return settings


@dataclass
class Run:
    """A bounded run of a stream processor over a backlog, seen from its output topic."""

    outputs: int  # records in the output topic at the end
    wall: float  # s, start-up included
    steady: float  # outputs/s from the first output to 95 % of them (steady_rate)
    # CPU s of the process tree (the job's JVM and Python workers), sampled from /proc twice a second:
    # misses up to the last half second of each process.
    cpu: float
    # CPU µs of the process tree per output inside the steady window (first output to 95 %): the
    # per-event cost without start-up, and much less sensitive than rates to other load on the machine.
    steady_cpu_us: float = float("nan")


def steady_window(samples: list[tuple[float, int]], total: int, started: float) -> tuple[float, int, float, int]:
    moving = [(t, n) for t, n in samples if n > 0]
    first_t, first_n = moving[0] if moving else (started, 0)
    last_t, last_n = next(((t, n) for t, n in moving if n >= 0.95 * total), moving[-1] if moving else (started, 0))
    return first_t, first_n, last_t, last_n


def steady_rate(samples: list[tuple[float, int]], total: int, started: float) -> float:
    """Steady state: from the first outputs out to 95 % of them (the tail is batch-granular), so
    start-up (JVM, job deployment, group join) is excluded."""
    moving = [(t, n) for t, n in samples if n > 0]
    first_t, first_n = moving[0] if moving else (started, 0)
    last_t, last_n = next(((t, n) for t, n in moving if n >= 0.95 * total), moving[-1] if moving else (started, 0))
    return (last_n - first_n) / (last_t - first_t) if last_t > first_t else float("nan")


def tree_cpu(root: int) -> dict[int, float]:
    """CPU s (user + system) so far of each live process in `root`'s tree, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state) on: ppid 4, utime 14, stime 15
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        cpu[pid] = (int(fields[11]) + int(fields[12])) / ticks
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in cpu:
            tree[pid] = cpu[pid]
        todo.extend(children.get(pid, ()))
    return tree


def timed_run(command: list[str], bootstrap: str, output_topic: str, partitions: int,
              env: dict[str, str] | None = None, what: str = "job", log: Path | None = None) -> Run:
    """Run `command` to completion while sampling `output_topic`'s end offsets and the CPU time of
    the command's process tree twice a second; its stderr goes to `log` if given."""
    samples: list[tuple[float, int]] = []
    cpu: dict[int, float] = {}  # pid -> CPU s at its last sample
    cpu_samples: list[tuple[float, float]] = []  # (time, CPU s of the tree so far)
    done = threading.Event()
    # The partitions' high watermarks: cheap, and exact for an at-least-once sink.
    watermarks = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-sampler"})
    tps = [TopicPartition(output_topic, p) for p in range(partitions)]

    def sample(pid: int):
        while not done.is_set():
            cpu.update(tree_cpu(pid))
            cpu_samples.append((time.monotonic(), sum(cpu.values())))
            try:
                high = sum(watermarks.get_watermark_offsets(tp, timeout=2)[1] for tp in tps)
                samples.append((time.monotonic(), high))
            except Exception:  # the topic may answer slowly while the job starts; the next sample counts
                pass
            done.wait(0.5)

    started = time.monotonic()
    process = subprocess.Popen(command, env=env if env is not None else os.environ.copy(), cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = threading.Thread(target=sample, args=(process.pid,), daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    if log is not None:
        log.write_text(stderr)
    wall = time.monotonic() - started
    done.set()
    sampler.join()
    watermarks.close()
    if process.returncode != 0:
        sys.exit(f"{what} failed:\n{stderr[-3000:]}")
    total = sum(end_offsets(bootstrap, output_topic).values())
    first_t, first_n, last_t, last_n = steady_window(samples, total, started)

    def cpu_at(t: float) -> float:
        return next((c for ct, c in reversed(cpu_samples) if ct <= t), 0.0)

    steady_cpu_us = ((cpu_at(last_t) - cpu_at(first_t)) * 1e6 / (last_n - first_n) if last_n > first_n
                     else float("nan"))
    return Run(total, wall, steady_rate(samples, total, started), sum(cpu.values()), steady_cpu_us)


def run_job_bounded(settings, script: Path = JOB) -> Run:
    """A segstream job script, bounded, over what the events topic holds (settings from the environment)."""
    return timed_run([sys.executable, str(script), "--bounded"], settings.kafka.bootstrap_servers,
                     settings.kafka.topics.evaluations, settings.kafka.events_partitions)


@app.command()
def backlog(events: int = 200_000, users: int = 2_000, bigtable: bool = False):
    settings = _settings(_fresh_topics(bigtable))
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    produce_records(bootstrap, topics.events, generate(TrafficSpec(events=events, users=users, invalid_ratio=0)),
                    total=events)
    f = settings.flink
    print(f"parallelism={f.parallelism} buffer_timeout={f.buffer_timeout_ms}ms bigtable={settings.bigtable.enabled}")
    print(f"load average before: {_load()}")
    run = run_job_bounded(settings)
    print(f"load average after:  {_load()}")
    print(f"events={events} evaluations={run.outputs} wall={run.wall:.1f}s (start-up included) "
          f"end-to-end={events / run.wall:,.0f} ev/s steady-state={run.steady:,.0f} ev/s")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@app.command("window-cost")
def window_cost(events: int = 200_000, users: int = 2_000, rounds: int = 3, span_hours: float = 0,
                private_stack: bool = typer.Option(True, help="on a stack of its own (segstream.testing.LocalStack), "
                                                              "not the one of conf/")):
    """The window branch's cost on the main job's throughput: the main job bounded over one backlog
    with `windows.enabled` false and true, `rounds` pairs alternating (off first), each run writing
    to topics of its own; the cost is that of the mean steady rates, and each pair's too.
    `span_hours`: the event time the backlog covers (0: the generator's default, ~21 s an event,
    i.e. sparse windows)."""
    if not private_stack:
        _window_cost(events, users, rounds, span_hours)
        return
    from segstream.testing import LocalStack

    stack = LocalStack.start(Path(tempfile.mkdtemp(prefix="segstream-window-cost-")))
    os.environ["SEGSTREAM_CONFIG"] = str(stack.config_path)
    try:
        _window_cost(events, users, rounds, span_hours)
    finally:
        stack.stop()


def _window_cost(events: int, users: int, rounds: int, span_hours: float) -> None:
    # No idleness on the loaded machine: a partition whose reader stalls 10 s would drop out of the
    # watermark, and its events behind the others' would turn late (fewer window updates, thousands
    # of late records): the windows' work would depend on the load, not on the events.
    base_env = {**_fresh_topics(bigtable=False), "SEGSTREAM_FLINK__WATERMARK_IDLENESS_MS": "600000"}
    settings = _settings(base_env)
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    span = int(span_hours * 3_600_000) or None
    produce_records(bootstrap, topics.events, generate(TrafficSpec(events=events, users=users, invalid_ratio=0,
                                                                   tenants=2, span_ms=span)), total=events)
    print(f"parallelism={settings.flink.parallelism} state backend={settings.flink.state_backend} events={events} "
          f"span_hours={span_hours or 'default'} windows={settings.windows.file} "
          f"delivery={settings.kafka.delivery_guarantee}")

    def report(run_id: str) -> str:
        windows = sum(end_offsets(bootstrap, f"{topics.aggregates}-{run_id}").values())
        late = sum(end_offsets(bootstrap, f"{topics.late_events}-{run_id}").values())
        return f"{windows} window aggregates, {late} late events"

    _alternate("windows", rounds, base_env, settings,
               lambda on: {"SEGSTREAM_WINDOWS__ENABLED": str(on).lower()}, report)


def _alternate(what: str, rounds: int, base_env: dict[str, str], settings, variant, report) -> None:
    """`rounds` pairs of bounded runs of the main job over the backlog already in the events topic,
    `what` off then on (`variant(on)`: its environment), each writing to topics of its own; print
    each run, each pair's cost and the cost of the mean steady rates."""
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    results: dict[bool, list[float]] = {False: [], True: []}
    for n in range(rounds * 2):
        on = n % 2 == 1
        run_id = uuid.uuid4().hex[:6]
        env = {**os.environ, **base_env, **variant(on),
               **{f"SEGSTREAM_KAFKA__TOPICS__{name.upper()}": f"{getattr(topics, name)}-{run_id}"
                  for name in ("evaluations", "expirations", "dead_letters", "aggregates", "alerts", "late_events")},
               "SEGSTREAM_KAFKA__GROUP_ID": f"bench-{run_id}"}
        os.environ.update(env)
        ensure_topics(bootstrap, topic_plan(load_settings()), configs=topic_configs(settings))
        load_before = _load()
        run = timed_run([sys.executable, str(JOB), "--bounded"], bootstrap, f"{topics.evaluations}-{run_id}",
                        settings.kafka.events_partitions, env=env)
        results[on].append(run.steady)
        pair = f" (pair {len(results[True])}: cost {100 * (1 - run.steady / results[False][-1]):.1f} %)" if on else ""
        print(f"main job {what} {'on ' if on else 'off'}: steady {run.steady:,.0f} ev/s{pair}, "
              f"{run.steady_cpu_us:.0f} CPU µs/event, wall {run.wall:.1f} s, CPU {run.cpu:.0f} s, "
              f"{report(run_id)}; load average before {load_before}, after {_load()}")
    off, on_rate = statistics.mean(results[False]), statistics.mean(results[True])
    print(f"mean steady rate {what} off {off:,.0f} ev/s, on {on_rate:,.0f} ev/s: "
          f"cost {100 * (1 - on_rate / off):.1f} %")


# The PII policy of pii-cost: a field of every kind of generated event hashed or dropped, for every
# tenant (the default policy), so that every event is redacted (docs/security.md, "Item 6").
BENCH_PII_POLICY = ('{"values.device": "hash", "values.product_id": "hash", "values.country": "hash", '
                    '"values.item": "drop"}')


@app.command("pii-cost")
def pii_cost(events: int = 100_000, users: int = 2_000, rounds: int = 2):
    """The PII policy's cost on the main job's steady rate: bounded runs over one backlog with no
    policy and with BENCH_PII_POLICY (every event redacted), alternating, on a private stack; the
    window branch off in both (its late events vary with the load, not with the policy)."""
    from segstream.testing import LocalStack

    stack = LocalStack.start(Path(tempfile.mkdtemp(prefix="segstream-pii-cost-")))
    os.environ["SEGSTREAM_CONFIG"] = str(stack.config_path)
    try:
        base_env = {**_fresh_topics(bigtable=False), "SEGSTREAM_WINDOWS__ENABLED": "false"}
        settings = _settings(base_env)
        produce_records(settings.kafka.bootstrap_servers, settings.kafka.topics.events,
                        generate(TrafficSpec(events=events, users=users, invalid_ratio=0, tenants=2)), total=events)
        print(f"parallelism={settings.flink.parallelism} state backend={settings.flink.state_backend} "
              f"events={events} windows={settings.windows.enabled} policy={BENCH_PII_POLICY}")
        _alternate("pii policy", rounds, base_env, settings,
                   lambda on: {"SEGSTREAM_PII__DEFAULT": BENCH_PII_POLICY if on else "{}"}, lambda run_id: "events")
    finally:
        stack.stop()


@app.command()
def latency(rate: float = 1_000, seconds: float = 60, users: int = 2_000, bigtable: bool = False,
            warm_up_s: float = typer.Option(20, help="seconds at the same rate before the measured ones (JIT, "
                                                       "caches); their latencies are not counted"),
            script: Path = typer.Option(JOB, help="the job to measure, e.g. bench/floor_job.py (the framework's "
                                                  "own latency in the same pipeline shape)"),
            isolation: str = typer.Option("read_uncommitted", help="the reader's isolation.level: read_committed "
                                          "sees an exactly-once sink's records only once their checkpoint commits")):
    settings = _settings(_fresh_topics(bigtable))
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    job = subprocess.Popen([sys.executable, str(script)], env=os.environ.copy(), cwd=PROJECT_ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # fetch.wait.max.ms: the reader must not add its own wait (the broker may hold a fetch that long).
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-latency", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 10, "isolation.level": isolation})
    consumer.assign([TopicPartition(topics.evaluations, p, 0) for p in range(settings.kafka.events_partitions)])
    sent_at: dict[str, float] = {}
    measured: set[str] = set()  # the events sent after the warm-up
    latencies: list[float] = []
    stop = threading.Event()

    def consume():
        while not stop.is_set():
            # One message at a time: consume(n, timeout) waits until n messages have come (or the
            # timeout), which added up to 200 ms of the reader's own to every latency.
            m = consumer.poll(0.1)
            if m is None or m.error():
                continue
            event_id = msgspec.json.decode(m.value())["event_id"]
            if event_id in sent_at and (event_id in measured or not measured):
                latencies.append((time.time() - sent_at[event_id]) * 1000)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    try:
        # The job's start-up is not latency: one warm-up event, and the clock runs once it is evaluated.
        warm_up = next(iter(generate(TrafficSpec(events=1, users=1, invalid_ratio=0, seed=-1))))
        assert warm_up.value is not None  # generate() makes no tombstones
        sent_at[msgspec.json.decode(warm_up.value)["event_id"]] = time.time()
        produce_records(bootstrap, topics.events, [warm_up], progress=False)
        wait_for(lambda: latencies or job.poll() is not None, 300, "the warm-up event's evaluation", 0.2)
        if job.poll() is not None:
            sys.exit(f"the job exited with {job.returncode} before the warm-up event was evaluated")
        count, warm = int(rate * seconds), int(rate * warm_up_s)

        def stamped():
            for index, record in enumerate(generate(TrafficSpec(events=warm + count, users=users, invalid_ratio=0))):
                event = msgspec.json.decode(record.value)
                if index == warm:  # from here on latencies count
                    latencies.clear()
                if index >= warm:
                    measured.add(event["event_id"])
                sent_at[event["event_id"]] = time.time()
                yield Record(record.key, record.value, int(time.time() * 1000))

        produce_records(bootstrap, topics.events, stamped(), rate=rate, total=warm + count)
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
    print(f"rate={rate:,.0f} ev/s for {seconds:.0f}s after {warm_up_s:.0f}s of warm-up ({isolation}): "
          f"{len(latencies)}/{count} evaluated; latency ms "
          f"p50={q[49]:.0f} p95={q[94]:.0f} p99={q[98]:.0f} max={max(latencies):.0f}")


if __name__ == "__main__":
    app()
