"""Event time you can trust (issue 14, item 3) on the real broker and the MiniCluster, unbounded as
in production.

The bug: one record per partition stamped far in the future (valid by the contract: ts up to the
year 9999) moved every partition's watermark there, so the evaluator's expiry timers fired for every
user of every tenant. Here such a record sits in the middle of each partition of traffic with
`expire_after: 1h`, and the job runs until every valid event is evaluated and every expiry that is
really due is written. Asserted:

- the events topic is on LogAppendTime (the broker, not the producer, stamps the records);
- each far-future record is dead-lettered once, with the reason the Python contract gives against
  the record's append time (operators/event_time.py);
- the expiries are exactly the due ones (testing.check_expirations: each due one, none other): had
  any far-future record moved a watermark, the timers of every user seen before it would have fired
  and their next events would have started a new life;
- every valid event is evaluated once, each user's last with the seq of all its events.
"""

from __future__ import annotations

import msgspec
import pytest
import yaml
from confluent_kafka import Producer

from operators.catalogue import load_catalogue
from operators.event_time import future_skew_reason
from operators.events import MAX_TS
from segstream import reference
from segstream.config import PROJECT_ROOT
from segstream.job_process import JobProcess
from segstream.kafka_admin import read_topic, timestamp_type, value_of
from segstream.produce import TrafficSpec, generate, now_ms, produce_records
from segstream.testing import (
    TopicWatcher,
    check_expirations,
    due_expirations,
    events_by_user,
    expiry_id,
    last_evaluations,
    wait_for,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

HOUR = 3_600_000
NOW = 1_767_225_600_000  # 2026-01-01: fixed traffic, long before any append time


def far_future(partition: int) -> bytes:
    # The contract's latest ts, and a year ahead of the clock: both valid by parse_record.
    ts = MAX_TS if partition % 2 == 0 else now_ms() + 365 * 24 * HOUR
    return msgspec.json.encode({"event_id": f"future-{partition}", "user_id": f"future-{partition}", "ts": ts,
                                "name": "page_view", "tenant": f"tenant-{partition}"})


def test_a_far_future_record_per_partition_expires_nobody(job_config, tmp_path):
    base, base_path = job_config
    stats = yaml.safe_load((PROJECT_ROOT / "conf" / "stats.yaml").read_text())
    stats["expire_after"] = "1h"
    stats_file = tmp_path / "stats-1h.yaml"
    stats_file.write_text(yaml.safe_dump(stats, sort_keys=False))
    data = yaml.safe_load(base_path.read_text())
    data["stats_file"] = str(stats_file)
    data.setdefault("bigtable", {})["enabled"] = False
    config_path = tmp_path / "event-time.yaml"
    settings = write_config(config_path, data)
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    assert timestamp_type(bootstrap, topics.events) == "LogAppendTime"

    # Six hours of traffic: users idle for over an hour expire between their events, and the users
    # of the first hours by their timers once the watermark passes.
    records = list(generate(TrafficSpec(events=3_000, users=120, seed=14, invalid_ratio=0, tenants=2, now=NOW,
                                        span_ms=6 * HOUR)))
    half = len(records) // 2
    produce_records(bootstrap, topics.events, records[:half], progress=False)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    partitions = range(settings.kafka.events_partitions)
    for p in partitions:
        # The producer's timestamp claims the event time; LogAppendTime replaces it.
        producer.produce(topics.events, far_future(p), f"future-{p}".encode(), partition=p, timestamp=MAX_TS)
    assert producer.flush(30) == 0
    produce_records(bootstrap, topics.events, records[half:], progress=False)

    inputs = read_topic(bootstrap, topics.events)
    per_user, refused = events_by_user(inputs, settings.events.max_future_skew_ms)
    assert sorted(m.partition for m in refused) == list(partitions), "one far-future record per partition"
    assert all(m.timestamp < now_ms() + 60_000 for m in inputs), "record timestamps are the broker's"
    catalogue = load_catalogue(stats_file)
    rules = {r["id"]: r for r in yaml.safe_load(settings.path(settings.rules_file).read_text())["rules"]}
    lives = {user: reference.lives(events, catalogue.expire_after) for user, events in per_user.items()}
    required, _ = due_expirations(settings, inputs, lives, catalogue, rules)
    # Due by their timers alone (a user's last life): what proves the watermark still moves.
    by_timer = [k for k, r in required.items() if r["seq"] == len(per_user[k[:2]])]
    assert len(required) > 50 and len(by_timer) > 20, (len(required), len(by_timer))
    valid_ids = {e.event_id for events in per_user.values() for e in events}

    evaluations = TopicWatcher(bootstrap, topics.evaluations)
    expirations = TopicWatcher(bootstrap, topics.expirations, record_id=expiry_id)
    job = JobProcess.start(config_path, [], tmp_path / "job.log", flink_log_dir=tmp_path / "flink-log")
    try:
        wait_for(lambda: valid_ids <= evaluations.event_ids and required.keys() <= expirations.event_ids, 400,
                 "every valid event evaluated and every due expiry written", 0.2, abort=job.exit_reason)
    finally:
        job.kill()
        evaluations.close()
        expirations.close()

    written = check_expirations(settings, inputs, lives, catalogue, rules)
    assert written >= len(required)

    dead = [msgspec.json.decode(value_of(m)) for m in read_topic(bootstrap, topics.dead_letters)]
    assert sorted((d["partition"], d["offset"]) for d in dead) == sorted((m.partition, m.offset) for m in refused)
    for d, m in zip(sorted(dead, key=lambda d: d["partition"]), refused, strict=True):
        ts = msgspec.json.decode(value_of(m))["ts"]
        assert d["reason"] == future_skew_reason(ts, m.timestamp, settings.events.max_future_skew_ms), d
        assert d["reason"].startswith(f"ts is {ts - m.timestamp} ms after the record's append time")

    decoded = [msgspec.json.decode(value_of(m)) for m in read_topic(bootstrap, topics.evaluations)]
    ids = [d["event_id"] for d in decoded]
    assert len(ids) == len(set(ids)) and set(ids) == valid_ids, "one evaluation per valid event, no other"
    # Each user's last evaluation counts the events of its last life: no life was cut short.
    last = last_evaluations(decoded)
    for user, user_lives in lives.items():
        assert last[user]["seq"] == sum(len(life) for life in user_lives), user
    print(f"\n{len(decoded)} evaluations, {written} expiries ({len(by_timer)} by timer), {len(dead)} dead letters")
