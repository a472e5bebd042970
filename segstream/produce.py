"""Seeded, reproducible sample traffic and a rate-limited Kafka producer.

Traffic shape: users drawn from a Zipf-like popularity (a few very hot users), each pick emits a
short visit of page views (sometimes an add-to-cart or a purchase) a few seconds apart, identify
events carry membership, a small share of events is out of order by up to a few seconds, and a
small share of records is invalid in every way the contract names.

Time: the traffic is anchored in real time. A history (`generate`) ends at `now`: its last event
is at `now`, the first at `now - span`, and none is later than `now` (an out-of-order event is
only ever earlier than its place in the stream). Visits arrive at random and overlap when the
traffic is dense, so a long history still fits the Bigtable retention: the span is about 21 s an
event, at most MAX_SPAN_MS (60 days, two thirds of the 90-day retention). Live traffic (`live`)
starts at `now` instead and releases each record when the wall clock reaches its timestamp, so
it is stamped at about wall-clock time. Given a seed and a fixed `now`, the records are the same
on every run.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import msgspec
from confluent_kafka import Producer
from rich.progress import Progress

from operators import erasure, ownership
from operators.events import DEFAULT_TENANT, MAX_RECORD_BYTES, MAX_USER_ID_BYTES

DAY_MS = 86_400_000
# A history's default span: this much event time per event (the density of the traffic before it
# was anchored at now: ~21 s an event), and never more than MAX_SPAN_MS, so that a history of any
# size lies inside the 90-day Bigtable retention (bigtable.retention_days) with a month to spare.
MS_PER_EVENT = 21_000
MAX_SPAN_MS = 60 * DAY_MS
# A visit: its first event 0.5-20 s after it starts, each next one 0.5-20 s after the one before;
# after each event the visit ends with probability VISIT_END (so 4 events a visit on average).
STEP_MS = (500, 20_000)
VISIT_END = 0.25
MEAN_VISIT_EVENTS = 1 / VISIT_END
# Visits start up to this much simulated time before the first event, so the traffic starts at its
# steady rate instead of ramping up while the first visits fill in (fewer than 1 % of the events
# of a visit come later than this after its start).
WARM_UP_MS = 300_000
MIN_VISIT_GAP_MS = 0.01

PATHS = ["/", "/search", "/items/1", "/items/2", "/items/3", "/cart", "/campaign/winter", "/help"]
ITEMS = ["tea", "coffee", "mug", "kettle", "beans", "filter"]
PLANS = ["free", "basic", "premium"]
DEVICES = ["ios", "android", "desktop"]
COUNTRIES = ["JP", "US", "FR", "BR"]


def now_ms() -> int:
    return int(time.time() * 1000)


def default_span_ms(events: int) -> int:
    return min(events * MS_PER_EVENT, MAX_SPAN_MS)


class Record(NamedTuple):
    key: bytes | None
    value: bytes | None  # None: a tombstone
    timestamp: int | None  # Kafka record timestamp = event time, so Flink needs no Python timestamp assigner
    headers: tuple[tuple[str, bytes], ...] = ()


def signed_rule(keys: Sequence[str], rule_id: str | bytes | None, value: bytes | None, owner: str = "",
                timestamp: int | None = None) -> Record:
    """A record for the rules topic, signed for `owner` (empty: an operator; docs/security.md)."""
    key = rule_id.encode("utf-8") if isinstance(rule_id, str) else rule_id
    return Record(key, value, timestamp,
                  ((ownership.HEADER, ownership.sign(keys, ownership.RULE, key, owner, value)),))


def erase_command(keys: Sequence[str], tenant: str, user_id: str, erasure_id: str, owner: str = "",
                  timestamp: int | None = None) -> Record:
    """A signed erase command for the events topic (operators/erasure.py), keyed like the user's events."""
    key = user_id.encode("utf-8")
    value = erasure.encode(erasure_id, tenant, user_id)
    return Record(key, value, timestamp if timestamp is not None else int(time.time() * 1000),
                  ((ownership.HEADER, ownership.sign(keys, ownership.ERASE, key, owner, value)),))


@dataclass(frozen=True)
class TrafficSpec:
    events: int
    users: int
    seed: int = 42
    invalid_ratio: float = 0.002
    tenants: int = 1
    out_of_order_ratio: float = 0.02
    max_disorder_ms: int = 5_000
    zipf_s: float = 1.1
    # Where the traffic ends (generate) or starts (live), epoch ms; None = the wall clock when the
    # generation starts. Fix it for the same records on every run.
    now: int | None = None
    # About how much event time the traffic covers; None = default_span_ms(events).
    span_ms: int | None = None


def tenant_name(index: int) -> str:
    return DEFAULT_TENANT if index == 0 else f"tenant-{index}"


def generate(spec: TrafficSpec) -> Iterator[Record]:
    """Exactly `spec.events` records (valid and invalid), a history that ends at `spec.now`.

    Timestamps lie in [now - span - max_disorder_ms, now], where span = timeline_span_ms(spec) (the
    first event is at now - span unless it is out of order, the last in-order event at now):
    nothing is ever stamped later than `now`. Deterministic for a seed and a fixed `now`.
    """
    now = now_ms() if spec.now is None else spec.now
    # The timeline is drawn twice, once to find where it ends and once to emit it: it has a small
    # random stream of its own, a fraction of the cost of the records.
    _, last = _bounds(spec)
    return _records(spec, offset=now - last)


def timeline_span_ms(spec: TrafficSpec) -> int:
    """How much event time the traffic covers: from the first event to the last, before any is
    moved out of order (about spec.span_ms, or default_span_ms(events))."""
    first, last = _bounds(spec)
    return last - first


def _bounds(spec: TrafficSpec) -> tuple[int, int]:
    first = last = 0
    for i, (ts, *_) in enumerate(_timeline(spec)):
        if i == 0:
            first = ts
        last = ts
    return first, last


def live(spec: TrafficSpec, rate: float, clock: Callable[[], float] = time.time,
         sleep: Callable[[float], None] = time.sleep) -> Iterator[Record]:
    """The same kind of traffic at about `rate` events/s from `spec.now` (default: the wall clock)
    on: each record is released once `clock()` reaches its timestamp, so records are stamped at
    about the wall-clock time they are sent (an out-of-order one up to max_disorder_ms earlier)
    and never ahead of it. Produce it without a rate of its own: this paces it."""
    if rate <= 0:
        raise ValueError("live traffic needs a rate above 0 events/s")
    start = int(clock() * 1000) if spec.now is None else spec.now
    spec = replace(spec, span_ms=max(1, round(spec.events / rate * 1000)))
    for record in _records(spec, offset=start):  # the timeline starts at 0 (after its warm-up)
        assert record.timestamp is not None  # _records stamps every record
        wait = record.timestamp / 1000 - clock()
        if wait > 0:
            sleep(wait)
        yield record


def _timeline(spec: TrafficSpec) -> Iterator[tuple[int, int, int, bool]]:
    """(ts, visit, n, last_of_visit) of exactly `spec.events` events in time order, relative to an
    arbitrary origin; drawn from a random stream of its own, so it is cheap to draw twice.

    Visits start at random, on average every MEAN_VISIT_EVENTS * span / events ms, whatever the
    previous visits are doing: when traffic is dense, visits overlap and their events interleave."""
    rng = random.Random(f"segstream-timeline-{spec.seed}")
    span = default_span_ms(spec.events) if spec.span_ms is None else spec.span_ms
    # At most 400,000 events/s, more than one producer sends: a denser span comes out longer.
    mean_gap = max(MEAN_VISIT_EVENTS * span / max(spec.events, 1), MIN_VISIT_GAP_MS)
    pending: list[tuple[int, int, int]] = []  # (ts, visit, n) of each open visit's next event
    # Warm-up visits: at most 100,000 or 4 for each event of the traffic, whichever is more (a long
    # and dense traffic starts at a little less than its steady rate instead of costing more).
    warm_up = min(float(WARM_UP_MS), max(4 * spec.events, 100_000) * mean_gap)
    arrival, visits, emitted = -warm_up, 0, 0
    while emitted < spec.events:
        if not pending or arrival <= pending[0][0]:
            heapq.heappush(pending, (int(arrival) + rng.randint(*STEP_MS), visits, 0))
            visits += 1
            arrival += rng.uniform(0, 2 * mean_gap)
            continue
        ts, visit, n = heapq.heappop(pending)
        last = rng.random() < VISIT_END
        if not last:
            heapq.heappush(pending, (ts + rng.randint(*STEP_MS), visit, n + 1))
        if ts >= 0:  # before 0: the warm-up
            emitted += 1
            yield ts, visit, n, last


def _records(spec: TrafficSpec, offset: int) -> Iterator[Record]:
    """The records of the timeline moved by `offset`: users, names, values, disorder and invalid
    records from the seed's own random stream."""
    rng = random.Random(spec.seed)
    weights = [1.0 / (rank ** spec.zipf_s) for rank in range(1, spec.users + 1)]
    cum_weights = list(itertools.accumulate(weights))  # what choices(weights=) computes on every call
    users = [(tenant_name(i % spec.tenants), f"u{i:06d}") for i in range(spec.users)]
    visitors: dict[int, tuple[str, str]] = {}
    encoder = msgspec.json.Encoder()
    for seq, (ts, visit, n, last) in enumerate(_timeline(spec)):
        if visit not in visitors:  # its first event here (a visit from the warm-up may be under way)
            visitors[visit] = rng.choices(users, cum_weights=cum_weights)[0]
        tenant, user_id = visitors.pop(visit) if last else visitors[visit]
        event = _event(rng, spec, tenant, user_id, ts + offset, visit, n)
        if rng.random() < spec.invalid_ratio:
            yield _invalid(rng, seq, event["ts"])
        else:
            yield Record(user_id.encode(), encoder.encode(event), event["ts"])


def _event(rng: random.Random, spec: TrafficSpec, tenant: str, user_id: str, ts: int, visit: int, n: int) -> dict:
    event_ts = ts
    if rng.random() < spec.out_of_order_ratio:
        event_ts = max(0, ts - rng.randint(1, spec.max_disorder_ms))
    roll = rng.random()
    if roll < 0.70:
        name, values = "page_view", {"path": rng.choice(PATHS), "duration_ms": rng.randint(50, 60_000),
                                     "device": rng.choice(DEVICES)}
    elif roll < 0.85:
        name, values = "add_to_cart", {"product_id": rng.choice(ITEMS), "price": rng.randint(100, 8_000)}
    elif roll < 0.95:
        name, values = "purchase", {"amount": rng.randint(300, 20_000), "item": rng.choice(ITEMS),
                                    "currency": "JPY"}
    else:
        name, values = "identify", {"member": rng.random() < 0.4, "plan": rng.choice(PLANS),
                                    "country": rng.choice(COUNTRIES), "age": rng.choice([None, rng.randint(18, 80)])}
    return {"event_id": f"e{spec.seed}-{visit}-{n}", "tenant": tenant, "user_id": user_id,
            "ts": event_ts, "name": name, "values": values}


def _invalid(rng: random.Random, seq: int, ts: int) -> Record:
    """One record that breaks the contract in one of the ways it names, sent at simulated time `ts`
    (a record stamped with the wall clock would drag the job's watermark to today)."""
    kind = rng.randrange(7)
    good = {"event_id": f"bad-{seq}", "user_id": f"u-bad-{seq}", "ts": 0, "name": "page_view", "values": {}}
    if kind == 0:
        value = b"{not json"
    elif kind == 1:
        value = b"\xff\xfe\x00 not utf-8"
    elif kind == 2:
        value = msgspec.json.encode({k: v for k, v in good.items() if k != "user_id"})
    elif kind == 3:
        value = msgspec.json.encode({**good, "ts": "yesterday"})
    elif kind == 4:
        value = msgspec.json.encode({**good, "user_id": ""})
    elif kind == 5:
        value = msgspec.json.encode({**good, "user_id": "x" * (MAX_USER_ID_BYTES + 1)})
    else:
        value = msgspec.json.encode({**good, "values": {"blob": "x" * MAX_RECORD_BYTES}})
    return Record(f"invalid-{seq}".encode(), value, ts)


@dataclass(frozen=True)
class Burst:
    """A surge to inject into a traffic (with_burst): `events` page views of one tenant within
    `duration_ms` of event time starting at `start` (epoch ms), from `users` users on one path.
    Keep the burst inside one window (docs/windows.md) for one alert: the demo starts it at a
    5-minute boundary (burst_start)."""

    start: int
    events: int
    tenant: str = DEFAULT_TENANT
    duration_ms: int = 120_000
    users: int = 50
    path: str = "/campaign/winter"
    seed: int = 7


def burst_start(records: list[Record], at: float = 0.8, window_ms: int = 300_000) -> int:
    """The start of the window (of `window_ms`, epoch-aligned) holding the record at `at` (0..1) of
    `records`: where to put a Burst so that it lands in one window."""
    ts = records[min(len(records) - 1, int(len(records) * at))].timestamp or 0
    return ts // window_ms * window_ms


def burst_records(burst: Burst) -> list[Record]:
    """The burst's page views in time order (event ids `surge-<seed>-<n>`)."""
    rng = random.Random(f"segstream-burst-{burst.seed}")
    stamps = sorted(burst.start + rng.randrange(burst.duration_ms) for _ in range(burst.events))
    encoder = msgspec.json.Encoder()
    out = []
    for n, ts in enumerate(stamps):
        user_id = f"surge{rng.randrange(burst.users):04d}"
        event = {"event_id": f"surge-{burst.seed}-{n}", "tenant": burst.tenant, "user_id": user_id, "ts": ts,
                 "name": "page_view", "values": {"path": burst.path, "duration_ms": rng.randint(50, 5_000),
                                                 "device": rng.choice(DEVICES)}}
        out.append(Record(user_id.encode(), encoder.encode(event), ts))
    return out


def with_burst(records: Iterable[Record], burst: Burst) -> list[Record]:
    """`records` with the burst merged in by timestamp: each burst record goes right before the
    first record stamped later, so the traffic's order (and disorder) is kept and no burst record
    is later than the watermark allows."""
    return list(heapq.merge(records, burst_records(burst), key=lambda r: r.timestamp or 0))


def read_jsonl(path: Path) -> Iterator[Record]:
    """Replay a JSONL file: one record per non-empty line, keyed by user_id when it parses."""
    with path.open("rb") as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            try:
                obj = msgspec.json.decode(line)
                key, ts = str(obj["user_id"]).encode(), int(obj["ts"])
            except (msgspec.DecodeError, KeyError, TypeError, ValueError):
                key, ts = None, None
            yield Record(key, line, ts)


def produce_records(bootstrap: str, topic: str, records: Iterable[Record], rate: float = 0,
                    total: int | None = None, progress: bool = True,
                    max_message_bytes: int = 2 * MAX_RECORD_BYTES) -> int:
    """Send records (keyed, timestamped); wait until every one is acknowledged; raise on any failure.
    `max_message_bytes`: the producer's message.max.bytes (twice the contract's record limit, so
    that oversized records can be sent to test the job; raise it, and the topic's
    max.message.bytes, for bigger ones)."""
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 500_000,
        # Idempotent: a retried batch can neither be duplicated nor overtake a later one, so each
        # partition holds the records in the order they were produced (tests recompute from it).
        "enable.idempotence": True,
        "message.max.bytes": max_message_bytes,
    })
    failures: list[str] = []

    def on_delivery(error, _message):
        if error is not None:
            failures.append(str(error))

    sent = 0
    started = time.monotonic()
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(f"producing to {topic}", total=total)
        for record in records:
            while True:
                try:
                    producer.produce(topic, record.value, record.key, timestamp=record.timestamp or 0,
                                     headers=list(record.headers) or None, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.1)
            sent += 1
            producer.poll(0)
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if sent % 1000 == 0:
                bar.update(task, completed=sent)
        remaining = producer.flush(60)
    if remaining or failures:
        raise RuntimeError(f"{remaining} records unacknowledged, {len(failures)} failed: {failures[:3]}")
    return sent
