"""The two engines agree under a PII policy (operators/pii.py, jvm/engine Redaction): the same
redacted events (so the same evaluations), the same refusals of events that redaction makes too
big, and the same redacted dead letters (segstream/replay.py's `{"pii": ...}` line)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from operators.events import InvalidEvent, parse_record
from operators.pii import Policy
from segstream.hostile import hostile_events
from segstream.produce import TrafficSpec, generate
from segstream.replay import jvm_replay, python_replay
from tests.segstream.test_differential import CATALOGUE, DAY, RULES, T0, assert_same, scripts

pytestmark = pytest.mark.slow  # starts a JVM per example

KEY = b"differential-key"
# The generated scripts' fields (amount, plan, country, ...) and the traffic generator's
# (device, country, age, path, amount...): hashed, dropped, hashed by values.*, kept.
POLICY = Policy(KEY, {"values.country": "hash", "values.device": "hash", "values.age": "drop"}, {
    "acme": {"values.*": "hash", "values.amount": "keep", "values.plan": "drop"},
    "tenant-1": {"values.*": "hash", "values.amount": "keep", "values.path": "keep"},
    "tenant-2": {},
})
PII_LINE = json.dumps({"pii": json.loads(POLICY.to_json())})


def event_line(value: bytes | None) -> str:
    try:
        return json.dumps({"event": (value or b"").decode("utf-8")})
    except UnicodeDecodeError:
        return json.dumps({"event_b64": base64.b64encode(value or b"").decode()})


@settings(max_examples=10, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scripts(), st.booleans())
def test_generated_scripts_under_a_policy(script, strict_default):
    policy = PII_LINE if strict_default else json.dumps({"pii": {"key_hex": KEY.hex(), "default": {},
                                                                 "tenants": {"acme": {"values.*": "hash"}}}})
    lines = script[:2] + [policy] + script[2:]
    out = assert_same(lines, Path("/tmp/segstream-pii-differential-failure.jsonl"))
    if strict_default:  # every tenant of the scripts (and unreadable records) is policed
        for i, line in enumerate(out):
            if line.startswith('{"dead_letter":"') and not line.startswith('{"dead_letter":"rule: '):
                assert out[i + 1].startswith('{"dead_letter_fields":{"original_length":'), out[i:i + 2]


def test_traffic_and_hostile_records_under_a_policy(tmp_path):
    """3,000 records of the traffic generator (3 tenants, 5 % invalid) and three of every hostile
    class: the same redacted events, evaluations and dead-letter fields; every policed record of
    the traffic was redacted; no hash of a value differs."""
    lines = [json.dumps({"catalogue": CATALOGUE}), json.dumps({"rules": RULES}), PII_LINE]
    records = list(generate(TrafficSpec(events=3_000, users=100, tenants=3, invalid_ratio=0.05,
                                        now=T0 + 30 * DAY, seed=11)))
    lines += [event_line(r.value) for r in records]
    corpus = list(hostile_events(seed=3, per_class=3, ts=T0, giants=0))
    hostile = [event_line(h.value) for h in corpus]
    out = assert_same(lines, tmp_path / "script.jsonl")
    redacted = [json.loads(line)["redacted"] for line in out if line.startswith('{"redacted":')]
    assert redacted and all(e["tenant"] != "tenant-2" for e in redacted)
    hashed = re.compile("[0-9a-f]{64}")
    for e in redacted:
        if e["tenant"] == "default":
            assert "age" not in e["values"] and hashed.fullmatch(e["values"].get("device", "0" * 64))
        else:
            assert all(hashed.fullmatch(v) for k, v in e["values"].items() if k not in ("amount", "path"))
    assert sum(line.startswith('{"dead_letter_fields":') for line in out) >= 50
    # The hostile corpus: its reasons are compared by tests/integration/test_hostile_input.py; here
    # what a policed dead letter keeps (the default policy redacts: unreadable records too).
    head = lines[:3]
    fields = [[line for line in replay(head + hostile) if line.startswith('{"dead_letter_fields":')]
              for replay in (python_replay, jvm_replay)]
    # Every record the contract refuses (far-past and odd-id classes are valid events; without an
    # append time nothing is judged too far ahead) has its fields: the default policy redacts all.
    refused = sum(_refused(h.value) for h in corpus)
    assert refused >= len(corpus) // 2
    assert fields[0] == fields[1] and len(fields[0]) == refused


def _refused(raw: bytes | None) -> bool:
    try:
        parse_record(raw)
    except InvalidEvent:
        return True
    return False
