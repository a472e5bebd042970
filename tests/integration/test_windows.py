"""The windows against a from-scratch recomputation (segstream/window_reference.py): the window
branch of the main job (jobs/user_stats.py, `windows.enabled`, the default), and once the
standalone window job (jobs/windows.py, `windows.enabled: false`).

- bounded, exactly-once: on a deterministic traffic of 4 hours with one injected surge, every
  window's aggregate (count, sum, distinct users) equals the reference, each window once in the
  read_committed view; one alert, for the injected window, and none elsewhere; no late events;
- unbounded: events sent after the watermark passed their windows go to `late-events` with
  their windows and lateness, are counted nowhere else, and every other aggregate is unchanged;
- kill -9 at a random point after a checkpoint, restore the latest checkpoint: each window
  exactly once on the read_committed view, equal to the reference;
- stop with a savepoint while windows are open, restore it: those windows emitted once, complete;
- the standalone window job (jobs/windows.py): the same aggregates.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import yaml
from confluent_kafka import Producer

from operators.event_time import parse_appended
from operators.events import Event, InvalidEvent
from segstream import window_reference as ref
from segstream.checkpoints import completed_checkpoints, latest_checkpoint
from segstream.config import PROJECT_ROOT, Settings
from segstream.job_process import JOB_SCRIPT, JobProcess
from segstream.kafka_admin import read_topic, value_of
from segstream.produce import Burst, Record, TrafficSpec, burst_start, generate, produce_records, with_burst
from segstream.testing import (
    FAST_CHECKPOINTS,
    FAST_JVM,
    Feed,
    KillPoint,
    TopicWatcher,
    events_by_user,
    run_job,
    stop_with_savepoint,
    wait_for,
    write_config,
)
from segstream.windows import definitions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

WINDOWS_SCRIPT = PROJECT_ROOT / "jobs" / "windows.py"  # the standalone window job
HOUR = 3_600_000
WINDOW = 300_000
# A fixed end of traffic in the past (the broker refuses timestamps ahead of its clock), a window
# boundary + 1 min: the same records, so the same windows, on every run.
NOW = 1_700_000_000_000 // WINDOW * WINDOW + 60_000


def window_config(config_path: Path, out: Path, in_main_job: bool = True, **flink) -> Settings:
    """The test's config for the windows: exactly-once, fast checkpoints, no Bigtable, and an
    idleness timeout long enough that a source stalled on a loaded machine is never taken for
    idle (which would let the watermark run past its records and make them late). in_main_job:
    `windows.enabled` (the main job's branch), else the standalone window job's setting."""
    data = yaml.safe_load(config_path.read_text())
    data["kafka"]["delivery_guarantee"] = "exactly-once"
    data["flink"].update(FAST_CHECKPOINTS, watermark_idleness_ms=600_000, **flink)
    data.setdefault("bigtable", {})["enabled"] = False
    data.setdefault("windows", {})["enabled"] = in_main_job
    return write_config(out, data)


def sample(seed: int, events: int = 4_000, surge: int = 250) -> tuple[list[Record], int]:
    """4 hours of traffic (2 tenants, 1 % invalid records) and, with `surge`, that many page views
    of the default tenant in the window 70 % into it; returns the records and that window's start."""
    history = list(generate(TrafficSpec(events=events, users=150, seed=seed, tenants=2, invalid_ratio=0.01,
                                        now=NOW, span_ms=4 * HOUR)))
    start = burst_start(history, 0.7)
    return (with_burst(history, Burst(start, surge)) if surge else history), start


def valid_events(records) -> list[Event]:
    per_user, _ = events_by_user(records)
    return [e for events in per_user.values() for e in events]


def expected(settings: Settings, events: list[Event], late: set[str] | None = None,
             before: int | None = None) -> dict[tuple, dict]:
    """(window, tenant, value, start) -> the aggregate record, for the windows ending by `before`."""
    defs = definitions(settings)
    by_id = {d.id: d for d in defs}
    out = {}
    for key, agg in ref.aggregates(defs, events, late).items():
        d = by_id[key[0]]
        if before is None or key[3] + d.size_ms <= before:
            out[key] = agg.record(d, key[1], key[2], key[3])
    return out


def expected_alerts(settings: Settings, aggregates: dict[tuple, dict]) -> list[dict]:
    alerts = []
    for d in definitions(settings):
        counts = {(t, v, s): a["count"] for (w, t, v, s), a in aggregates.items() if w == d.id}
        alerts += ref.surges(d, counts)
    return alerts


def decoded(settings: Settings, topic: str) -> list[dict]:
    return [msgspec.json.decode(value_of(m)) for m in read_topic(settings.kafka.bootstrap_servers, topic)]


def window_key(a: dict) -> tuple:
    return a["window"], a["tenant"], a["value"], a["window_start"]


def assert_aggregates_are(written: list[dict], wanted: dict[tuple, dict]) -> None:
    """Each wanted window exactly once, equal to the reference, and nothing else (distinct users
    are an HLL estimate: exact at these sizes, but allowed 2 %)."""
    keys = [window_key(a) for a in written]
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} windows written more than once"
    assert set(keys) == set(wanted), (f"{len(set(wanted) - set(keys))} windows missing, e.g. "
                                      f"{sorted(set(wanted) - set(keys), key=str)[:3]}; "
                                      f"{len(set(keys) - set(wanted))} unexpected")
    for a in written:
        want = wanted[window_key(a)]
        assert abs(a["distinct_users"] - want["distinct_users"]) <= max(1, 0.02 * want["distinct_users"]), (a, want)
        assert {**a, "distinct_users": 0} == {**want, "distinct_users": 0}, (a, want)


def assert_alerts_are(written: list[dict], wanted: list[dict]) -> None:
    assert len(written) == len(wanted), f"{len(written)} alerts, expected {wanted}: {written}"
    for a, want in zip(sorted(written, key=lambda a: (a["window_start"], a["key"])), wanted, strict=True):
        assert {k: a[k] for k in want} == want
        assert a["id"] == ref.alert_id(a["tenant"], a["key"], a["window_start"], a["window_end"])


@pytest.mark.parametrize("in_main_job", [True, False], ids=["main-job", "standalone"])
def test_aggregates_and_the_surge_equal_the_reference(job_config, tmp_path, in_main_job):
    settings = window_config(job_config[1], tmp_path / "windows.yaml", in_main_job)
    records, surge_start = sample(seed=11)
    produce_records(settings.kafka.bootstrap_servers, settings.kafka.topics.events, records, progress=False)
    run_job(tmp_path / "windows.yaml", timeout=600, script=JOB_SCRIPT if in_main_job else WINDOWS_SCRIPT)

    topics = settings.kafka.topics
    events = valid_events(read_topic(settings.kafka.bootstrap_servers, topics.events))
    wanted = expected(settings, events)  # bounded: the end of input fires every window
    assert_aggregates_are(decoded(settings, topics.aggregates), wanted)
    alerts = expected_alerts(settings, wanted)
    assert [(a["key"], a["window_start"]) for a in alerts] == [("default/page_views", surge_start)], alerts
    assert_alerts_are(decoded(settings, topics.alerts), alerts)
    assert decoded(settings, topics.late_events) == []


def produce_flush(settings: Settings, ts: int) -> None:
    """One valid event of a name no window counts in every partition of the events topic, at `ts`:
    every partition's watermark passes the windows before it (what live traffic does by itself)."""
    bootstrap, topic = settings.kafka.bootstrap_servers, settings.kafka.topics.events
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for p in range(settings.kafka.events_partitions):
        event = {"event_id": f"flush-{ts}-{p}", "user_id": f"flush-{p}", "ts": ts, "name": "flush", "values": {}}
        producer.produce(topic, msgspec.json.encode(event), f"flush-{p}".encode(), partition=p, timestamp=ts)
    assert producer.flush(60) == 0


def start_windows(config_path: Path, workdir: Path, name: str, *args: str) -> JobProcess:
    """The main job with its window branch, unbounded."""
    return JobProcess.start(config_path, args, workdir / f"{name}.log", env={"JVM_ARGS": FAST_JVM},
                            flink_log_dir=workdir / f"flink-log-{name}")


def watermark_floor(settings: Settings) -> int:
    """The watermark once all of the events topic is read: the lowest partition's greatest ts (of
    its valid events: the record timestamps are append times) - out-of-orderness - 1."""
    greatest: dict[int, int] = {}
    for m in read_topic(settings.kafka.bootstrap_servers, settings.kafka.topics.events):
        try:
            ts = parse_appended(m.value, m.timestamp, settings.events.max_future_skew_ms).ts
        except InvalidEvent:
            continue
        greatest[m.partition] = max(greatest.get(m.partition, 0), ts)
    return min(greatest.values()) - settings.flink.watermark_out_of_orderness_ms - 1


def finish_restored(workdir: Path, savepoint: str, feed: Callable[[], None], wanted: set[tuple],
                    committed: TopicWatcher) -> None:
    """Start the main job from `savepoint` (config workdir/windows.yaml), run `feed`, wait until
    every wanted window is committed, stop the job with a savepoint."""
    job = start_windows(workdir / "windows.yaml", workdir, "restored", "--savepoint", savepoint)
    try:
        feed()
        wait_for(lambda: wanted <= committed.event_ids, 400, "every window committed", 0.5, abort=job.exit_reason)
        stop_with_savepoint(job, None, workdir / "savepoints")
    finally:
        if job.running():
            job.kill()


def late_sample() -> list[Record]:
    """Page views and purchases stamped 1-3 hours before NOW, one every 13 minutes: sent after the
    watermark has passed NOW - 30 min, each is late for every window it falls in."""
    out = []
    for n in range(12):
        ts = NOW - 3 * HOUR + n * 13 * 60_000 + 7_000
        name, values = ("purchase", {"amount": 100}) if n % 3 == 0 else ("page_view", {"path": "/cart",
                                                                                         "duration_ms": 10})
        event = {"event_id": f"late-{n}", "tenant": "default", "user_id": f"late-u{n}", "ts": ts,
                 "name": name, "values": values}
        out.append(Record(f"late-u{n}".encode(), msgspec.json.encode(event), ts))
    return out


def test_late_events_go_to_late_events_with_their_lateness(job_config, tmp_path):
    settings = window_config(job_config[1], tmp_path / "windows.yaml")
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    records, _ = sample(seed=12, events=3_000, surge=0)
    produce_records(bootstrap, topics.events, records, progress=False)
    aggregates = TopicWatcher(bootstrap, topics.aggregates, record_id=window_key)
    late_watch = TopicWatcher(bootstrap, topics.late_events, record_id=lambda r: (r["event_id"], r["window"],
                                                                                  r["window_start"]))
    floor = watermark_floor(settings)
    assert floor > NOW - 30 * 60_000, "a partition ends early: the late events would not all be late"
    closed = set(expected(settings, valid_events(records), before=floor + 1))
    job = start_windows(tmp_path / "windows.yaml", tmp_path, "late")
    try:
        wait_for(lambda: closed <= aggregates.event_ids, 400, "the windows the traffic closes", 0.5,
                 abort=job.exit_reason)
        late = late_sample()
        produce_records(bootstrap, topics.events, late, progress=False)
        produce_flush(settings, NOW + 2 * HOUR)
        defs = definitions(settings)
        late_events = valid_events(late)
        wanted_late = {(e.event_id, d.id, start) for e in late_events for d in defs if d.event == e.name
                       for start in ref.window_starts(e.ts, d.size_ms, d.slide_ms)}
        wanted = expected(settings, valid_events(records))
        wait_for(lambda: wanted_late <= late_watch.event_ids and set(wanted) <= aggregates.event_ids, 400,
                 "every late event routed and every window emitted", 0.5, abort=job.exit_reason)
        stop_with_savepoint(job, None, tmp_path / "savepoints")  # commits the last transaction
    finally:
        aggregates.close()
        late_watch.close()
        if job.running():
            job.kill()

    assert_aggregates_are(decoded(settings, topics.aggregates), wanted)  # the late events counted nowhere
    routed = decoded(settings, topics.late_events)
    assert sorted((r["event_id"], r["window"], r["window_start"]) for r in routed) == sorted(wanted_late)
    by_id = {e.event_id: e for e in late_events}
    sizes = {d.id: d.size_ms for d in defs}
    for r in routed:
        e = by_id[r["event_id"]]
        assert r["ts"] == e.ts and r["tenant"] == e.tenant and r["user_id"] == e.user_id
        assert r["window_end"] == r["window_start"] + sizes[r["window"]]
        # Late when it came: the watermark had reached `floor`, not yet the flush (NOW + 2 h).
        assert floor <= r["watermark"] <= NOW - settings.flink.watermark_out_of_orderness_ms - 1, r
        assert r["lateness_ms"] == r["watermark"] - e.ts > 30 * 60_000, r
        assert r["after_close_ms"] == r["watermark"] - (r["window_end"] - 1) >= 0, r
        assert r["reason"].startswith("late")
    assert decoded(settings, topics.alerts) == []


def test_each_window_exactly_once_across_a_kill_and_restore(job_config, tmp_path):
    settings = window_config(job_config[1], tmp_path / "windows.yaml")
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    records, surge_start = sample(seed=13)
    wanted = expected(settings, valid_events(records))
    alerts = expected_alerts(settings, wanted)
    assert [(a["key"], a["window_start"]) for a in alerts] == [("default/page_views", surge_start)]
    seed = random.randrange(1_000)
    share = random.Random(seed).uniform(0.1, 0.7)
    produce_records(bootstrap, topics.events, records[:300], progress=False)

    def rest() -> None:
        produce_records(bootstrap, topics.events, records[300:], rate=500, progress=False)
        produce_flush(settings, NOW + 2 * HOUR)

    watcher = TopicWatcher(bootstrap, topics.aggregates, record_id=window_key)
    committed = TopicWatcher(bootstrap, topics.aggregates, "read_committed", record_id=window_key)
    feed = Feed(rest)
    job = start_windows(tmp_path / "windows.yaml", tmp_path, "first")
    try:
        wait_for(lambda: watcher.count > 0 or job.exit_reason(), 400, "the first aggregate", 0.2)
        checkpoints = settings.path(settings.flink.checkpoint_dir)
        # The rest only once a checkpoint is complete: the main job's first one can take longer on a
        # loaded machine than the whole feed (then the kill would come after the last window).
        wait_for(lambda: completed_checkpoints(checkpoints), 400, "the first checkpoint", 0.2, abort=job.exit_reason)
        feed.start()
        kill_point = KillPoint(checkpoints, watcher, share, len(wanted))
        wait_for(kill_point.reached, 400, "a completed checkpoint and the kill point", 0.05, abort=job.exit_reason)
        job.kill()
        at_kill = watcher.count
        checkpoint = latest_checkpoint(checkpoints)
        assert checkpoint is not None
        finish_restored(tmp_path, checkpoint.as_uri(), lambda: feed.join(400), set(wanted), committed)
    finally:
        watcher.close()
        committed.close()
        if job.running():
            job.kill()
    print(f"seed {seed}: killed at {at_kill} of {len(wanted)} windows (share {share:.2f}), restored {checkpoint.name}")
    assert 0 < at_kill < len(wanted), "the kill did not fall mid-stream"
    assert_aggregates_are(decoded(settings, topics.aggregates), wanted)
    assert_alerts_are(decoded(settings, topics.alerts), alerts)
    assert decoded(settings, topics.late_events) == []


def test_a_window_open_across_a_savepoint_is_emitted_once(job_config, tmp_path):
    settings = window_config(job_config[1], tmp_path / "windows.yaml")
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    records, _ = sample(seed=14, events=2_000, surge=0)
    wanted = expected(settings, valid_events(records))
    split = len(records) // 2
    produce_records(bootstrap, topics.events, records[:split], progress=False)
    closed = set(expected(settings, valid_events(records[:split]), before=watermark_floor(settings) + 1))
    last_ts = max(r.timestamp or 0 for r in records[:split])

    aggregates = TopicWatcher(bootstrap, topics.aggregates, record_id=window_key)
    committed = TopicWatcher(bootstrap, topics.aggregates, "read_committed", record_id=window_key)
    job = start_windows(tmp_path / "windows.yaml", tmp_path, "first")
    try:
        wait_for(lambda: closed <= aggregates.event_ids, 400, "the windows the first half closes", 0.5,
                 abort=job.exit_reason)
        savepoint = stop_with_savepoint(job, None, tmp_path / "savepoints")
        # Open at the savepoint: windows not emitted that hold events of both halves.
        across = {k for k in wanted if k not in aggregates.event_ids and k[3] <= last_ts}
        assert across, "no window was open across the savepoint"


        def rest() -> None:
            produce_records(bootstrap, topics.events, records[split:], progress=False)
            produce_flush(settings, NOW + 2 * HOUR)

        finish_restored(tmp_path, savepoint, rest, set(wanted), committed)
    finally:
        aggregates.close()
        committed.close()
        if job.running():
            job.kill()
    assert_aggregates_are(decoded(settings, topics.aggregates), wanted)  # the open ones once, complete
    assert decoded(settings, topics.late_events) == []

