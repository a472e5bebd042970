"""Bad input (issue 10): the job (jobs/user_stats.py, the JVM engine) on the real broker and the MiniCluster
with ≥ 1,000 records of every hostile class of segstream/hostile.py (fewer of the 1 MiB+ records:
see GIANTS) shuffled into valid traffic, and ≥ 1,000 hostile rule records.

- no restart: the job runs with `flink.restart_attempts: 0` (restart strategy none), so any
  failure fails the job, and run_job its run;
- every invalid record is dead-lettered exactly once, from its topic, partition and offset, with
  the reason of the Python contract (operators.events.parse_record; rules: RuleSet.apply_change),
  its original bytes (base64; cut to 384 KiB with length and SHA-256 when bigger) and its key;
- every valid event (the odd-looking valid ones included) evaluated once, equal to the Python
  engine apart from rules_version; refused rules and tombstones of unknown rules change nothing.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
from collections import Counter

import msgspec
import pytest
import yaml
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from operators.catalogue import parse_catalogue
from operators.events import InvalidEvent, parse_record
from operators.ownership import signing_keys
from operators.rules import RuleSet, compile_rule
from segstream.hostile import EVENT_CLASS, RULE_CLASS, hostile_events, hostile_rules
from segstream.kafka_admin import read_topic, value_of
from segstream.produce import Record, TrafficSpec, generate, produce_records, signed_rule
from segstream.testing import assert_evaluations_are_python, run_job, write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SEED = 10
NOW = 1_767_225_600_000  # 2026-01-01: fixed, so the traffic is the same on every run
EVENTS, USERS = 6_000, 600
PER_CLASS = 1_000
# Records over 1 MiB (their dead letters keep 384 KiB): 1,000 of them would be over 1 GiB through
# the broker, the job and the dead letters on a 2-core CI machine, so fewer.
GIANTS = 24
RULES_PER_CLASS = 120  # 9 classes: 1,080 rule records
# = jvm/job DeadLetters.MAX_ORIGINAL_BYTES, MAX_KEY_BYTES
MAX_ORIGINAL_BYTES = 384 * 1024
MAX_KEY_BYTES = 64 * 1024
# Rule reasons from the JSON parser and the CEL compiler are the implementation's own (Python json
# and cel, Jackson and CEL-Java): only their common prefix is the contract.
RULE_REASON_PREFIX = {"rule_not_json": "rule: rule is not JSON: ", "rule_no_compile": "`when` does not compile: "}


def allow_big_records(bootstrap: str, topic: str, size: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", str(size), incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def test_hostile_input_is_dead_lettered_and_never_fails_the_job(job_config, tmp_path):
    base, base_path = job_config
    data = yaml.safe_load(base_path.read_text())
    data.setdefault("bigtable", {})["enabled"] = False
    data.setdefault("flink", {})["restart_attempts"] = 0  # any failure fails the run: no restart
    settings = write_config(tmp_path / "hostile.yaml", data)
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics

    rng = random.Random(SEED)
    valid = list(generate(TrafficSpec(events=EVENTS, users=USERS, seed=SEED, invalid_ratio=0, tenants=2, now=NOW)))
    stamps = [r.timestamp for r in valid]
    hostile = [Record(h.key, h.value, rng.choice(stamps)) for h in hostile_events(SEED, PER_CLASS, NOW, GIANTS)]
    kinds = [h.kind for h in hostile_events(SEED, PER_CLASS, NOW, GIANTS)]
    by_value = {}
    for record, kind in zip(hostile, kinds, strict=True):
        by_value.setdefault(record.value, kind)
    records = valid + hostile
    rng.shuffle(records)
    biggest = max(len(r.value or b"") for r in records)
    allow_big_records(bootstrap, topics.events, biggest + 4096)
    produce_records(bootstrap, topics.events, records, progress=False, max_message_bytes=biggest + 4096)
    keys = signing_keys(settings.ownership)  # signed: the rules are refused for what they say, not who wrote them
    rule_records = [signed_rule(keys, h.key, h.value, timestamp=rng.choice(stamps))
                    for h in hostile_rules(SEED, RULES_PER_CLASS, NOW)]
    rule_kinds = [h.kind for h in hostile_rules(SEED, RULES_PER_CLASS, NOW)]
    produce_records(bootstrap, topics.rules, rule_records, progress=False)

    run_job(tmp_path / "hostile.yaml")

    # The input as the job read it: every event class produced, in partition and offset order.
    inputs = read_topic(bootstrap, topics.events)
    assert len(inputs) == len(records)
    counts = Counter(kinds)
    assert all(counts[c] >= PER_CLASS for c in EVENT_CLASS if c != "giant") and counts["giant"] == GIANTS

    # Events: each invalid record dead-lettered once, with the Python contract's reason (which the
    # class's pattern describes), its bytes and its key; nothing else.
    dead = [msgspec.json.decode(value_of(m)) for m in read_topic(bootstrap, topics.dead_letters)]
    dead_keys = [m.key for m in read_topic(bootstrap, topics.dead_letters)]
    event_dead = {}
    for key, d in zip(dead_keys, dead, strict=True):
        if d["topic"] == topics.events:
            where = (d["partition"], d["offset"])
            assert where not in event_dead, f"dead-lettered twice: {where}"
            event_dead[where] = (key, d)
    refused = Counter()
    for m in inputs:
        try:
            parse_record(m.value)
        except InvalidEvent as exc:
            reason = str(exc)
        else:
            assert (m.partition, m.offset) not in event_dead, f"a valid event dead-lettered: {m.value[:200]!r}"
            continue
        assert (m.partition, m.offset) in event_dead, f"not dead-lettered: {reason}: {(m.value or b'')[:200]!r}"
        key, d = event_dead.pop((m.partition, m.offset))
        kind = by_value[m.value]
        refused[kind] += 1
        assert d["reason"] == reason, (kind, (m.value or b"")[:200])
        pattern = EVENT_CLASS[kind].reason
        assert pattern is not None and re.fullmatch(pattern, reason), (kind, reason)
        original = m.value or b""
        assert key == (m.key if m.key is None or len(m.key) <= MAX_KEY_BYTES else m.key[:MAX_KEY_BYTES])
        if len(original) <= MAX_ORIGINAL_BYTES:
            assert base64.b64decode(d["original_b64"]) == original and "original_truncated" not in d
        else:
            assert base64.b64decode(d["original_b64"]) == original[:MAX_ORIGINAL_BYTES]
            assert (d["original_truncated"], d["original_length"], d["original_sha256"]) == (
                True, len(original), hashlib.sha256(original).hexdigest())
    assert not event_dead, f"{len(event_dead)} dead letters of no invalid record"
    expected_refused = {c: n for c, n in counts.items() if EVENT_CLASS[c].reason is not None}
    assert refused == expected_refused

    # Valid events (the odd-looking ones too): one evaluation each, equal to the Python engine's.
    evaluations = read_topic(bootstrap, topics.evaluations)
    decoded = [msgspec.json.decode(value_of(m)) for m in evaluations]
    assert_evaluations_are_python(settings, inputs, decoded)
    for m, d in zip(evaluations, decoded, strict=True):
        assert m.key == d["user_id"].encode()
    assert max(d["rules_version"] for d in decoded) <= len(rule_records)
    # Expiries only of the odd valid records' users, the only ones whose events are months old.
    odd_users = set()
    for record, kind in zip(hostile, kinds, strict=True):
        if kind == "odd_valid":
            event = parse_record(record.value)
            odd_users.add((event.tenant, event.user_id))
    for m in read_topic(bootstrap, topics.expirations):
        expiry = msgspec.json.decode(value_of(m))
        assert (expiry["tenant"], expiry["user_id"]) in odd_users, expiry

    # Rules: each refused one dead-lettered once with the Python reason; the rest (tombstones of
    # unknown ids) changed nothing, which the evaluations above show.
    catalogue = parse_catalogue(yaml.safe_load(settings.path(settings.stats_file).read_text()))
    initial = yaml.safe_load(settings.path(settings.rules_file).read_text())["rules"]
    rule_set = RuleSet(catalogue, [compile_rule(rule, catalogue) for rule in initial])
    rule_dead = {d["offset"]: d for d in dead if d["topic"] == topics.rules}
    assert len(rule_dead) == sum(d["topic"] == topics.rules for d in dead), "a rule dead-lettered twice"
    rule_inputs = read_topic(bootstrap, topics.rules)
    assert len(rule_inputs) == len(rule_records) >= 1_000
    rule_kind = {r.value: k for r, k in zip(rule_records, rule_kinds, strict=True)}
    rules_refused = Counter()
    for m in rule_inputs:
        assert m.key is not None
        kind = rule_kind[m.value]
        reason = rule_set.apply_change(m.key.decode(), m.value or None)
        if reason is None:
            assert m.offset not in rule_dead and RULE_CLASS[kind].reason is None, kind
            continue
        rules_refused[kind] += 1
        d = rule_dead.pop(m.offset)
        expected = f"rule: {reason}"
        pattern = RULE_CLASS[kind].reason
        assert pattern is not None and re.fullmatch(pattern, expected, re.DOTALL), (kind, expected)
        if kind in RULE_REASON_PREFIX:
            prefix = expected[:expected.index(RULE_REASON_PREFIX[kind]) + len(RULE_REASON_PREFIX[kind])]
            assert d["reason"].startswith(prefix), (kind, d["reason"], expected)
        else:
            assert d["reason"] == expected, kind
        assert base64.b64decode(d["original_b64"]) == m.value
    assert not rule_dead
    assert sum(rules_refused.values()) >= 1_000 - RULES_PER_CLASS
    print("\nrefused events by class:", dict(sorted(refused.items())), "\nrefused rules by class:",
          dict(sorted(rules_refused.items())), f"\nvalid events evaluated: {len(decoded)}")
