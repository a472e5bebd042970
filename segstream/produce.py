"""Seeded, reproducible sample traffic and a rate-limited Kafka producer.

Traffic shape: users drawn from a Zipf-like popularity (a few very hot users), each pick emits a
short visit of page views (sometimes an add-to-cart or a purchase) a few seconds apart, identify
events carry membership, a small share of events is out of order by up to a few seconds, and a
small share of records is invalid in every way the contract names.
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import msgspec
from confluent_kafka import Producer
from rich.progress import Progress

from operators.events import DEFAULT_TENANT, MAX_RECORD_BYTES, MAX_USER_ID_BYTES

DAY_MS = 86_400_000


def default_start_ts() -> int:
    """Midnight UTC a week ago: inside the Bigtable retention, and the same all day for a seed."""
    return (int(time.time() * 1000) // DAY_MS - 7) * DAY_MS
PATHS = ["/", "/search", "/items/1", "/items/2", "/items/3", "/cart", "/campaign/winter", "/help"]
ITEMS = ["tea", "coffee", "mug", "kettle", "beans", "filter"]
PLANS = ["free", "basic", "premium"]
DEVICES = ["ios", "android", "desktop"]
COUNTRIES = ["JP", "US", "FR", "BR"]


class Record(NamedTuple):
    key: bytes | None
    value: bytes
    timestamp: int | None  # Kafka record timestamp = event time, so Flink needs no Python timestamp assigner


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
    start_ts: int = field(default_factory=default_start_ts)


def tenant_name(index: int) -> str:
    return DEFAULT_TENANT if index == 0 else f"tenant-{index}"


def generate(spec: TrafficSpec) -> Iterator[Record]:
    """Exactly `spec.events` records (valid and invalid), deterministic for a seed."""
    rng = random.Random(spec.seed)
    weights = [1.0 / (rank ** spec.zipf_s) for rank in range(1, spec.users + 1)]
    users = [(tenant_name(i % spec.tenants), f"u{i:06d}") for i in range(spec.users)]
    clock = spec.start_ts
    produced = 0
    encoder = msgspec.json.Encoder()
    while produced < spec.events:
        tenant, user_id = rng.choices(users, weights)[0]
        clock += rng.randint(1_000, 90_000)  # gaps between visits; long-tail users get multi-session histories
        for event in _visit(rng, spec, tenant, user_id, clock, produced):
            if produced >= spec.events:
                break
            if rng.random() < spec.invalid_ratio:
                yield _invalid(rng, produced, event["ts"])
            else:
                yield Record(user_id.encode(), encoder.encode(event), event["ts"])
            produced += 1
            clock = max(clock, event["ts"])


def _visit(rng: random.Random, spec: TrafficSpec, tenant: str, user_id: str, start: int, seq: int) -> Iterator[dict]:
    ts = start
    for n in itertools.count():
        if n and rng.random() < 0.25:
            return
        ts += rng.randint(500, 20_000)
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
        yield {"event_id": f"e{spec.seed}-{seq}-{n}", "tenant": tenant, "user_id": user_id,
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
                    total: int | None = None, progress: bool = True) -> int:
    """Send records (keyed, timestamped); wait until every one is acknowledged; raise on any failure."""
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 500_000,
        "enable.idempotence": False,
        "message.max.bytes": 2 * MAX_RECORD_BYTES,
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
                                     on_delivery=on_delivery)
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
