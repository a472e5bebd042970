"""The hostile corpus (segstream/hostile.py) through the Python contract: every record of an invalid
class refused with its class's reason, every odd-valid one accepted, never any exception but
InvalidEvent / a rule reason. The same corpus runs through the JVM job in
tests/integration/test_hostile_input.py."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import msgspec
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.catalogue import load_catalogue
from operators.event_time import parse_appended
from operators.events import (
    MAX_DEPTH,
    MAX_FIELD_BYTES,
    TOMBSTONE,
    InvalidEvent,
    dead_letter,
    parse_record,
)
from operators.rules import RuleSet, compile_rule
from segstream.hostile import EVENT_CLASS, EVENT_CLASSES, RULE_CLASSES, tenant_rules

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"event_id": "e1", "user_id": "u1", "ts": 1, "name": "n"}


def check_event(hostile, key, value) -> None:
    """The whole contract of an events-topic record, judged against an append time of now (as the
    broker stamps a record produced now): the far_future class is refused only so."""
    try:
        parse_appended(value, int(time.time() * 1000))
    except InvalidEvent as exc:
        assert hostile.reason is not None, f"{hostile.name}: refused: {exc}: {(value or b'')[:120]!r}"
        assert re.fullmatch(hostile.reason, str(exc)), f"{hostile.name}: {exc}: {(value or b'')[:120]!r}"
    else:
        assert hostile.reason is None, f"{hostile.name}: accepted: {(value or b'')[:120]!r}"


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(EVENT_CLASSES), st.randoms(use_true_random=False), st.integers(0, 10**6))
def test_every_event_class_is_refused_with_its_reason(hostile, rng, i):
    key, value = hostile.make(rng, i)
    check_event(hostile, key, value)


def test_a_seeded_corpus_of_every_class():
    rng = random.Random(7)
    for hostile in EVENT_CLASSES:
        for i in range(60 if hostile.name != "giant" else 2):
            check_event(hostile, *hostile.make(rng, i))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(RULE_CLASSES), st.randoms(use_true_random=False), st.integers(0, 10**6))
def test_every_rule_class_is_refused_with_its_reason_and_changes_nothing(hostile, rng, i):
    catalogue = load_catalogue(ROOT / "conf" / "stats.yaml")
    initial = yaml.safe_load((ROOT / "conf" / "rules.yaml").read_text())["rules"]
    rules = RuleSet(catalogue, [compile_rule(rule, catalogue) for rule in initial])
    before = dict(rules.rules)
    key, value = hostile.make(rng, i)
    assert key is not None
    reason = rules.apply_change(key.decode(), value or None)
    if hostile.reason is None:
        assert reason is None
    else:
        assert reason is not None and re.fullmatch(hostile.reason, f"rule: {reason}", re.DOTALL), reason
    assert rules.rules == before


@given(st.binary(max_size=2_000))
def test_any_bytes_are_an_event_or_a_reason(raw):
    try:
        parse_record(raw)
    except InvalidEvent as exc:
        assert str(exc)


# --- the contract's new bounds ----------------------------------------------------------------------------


def test_a_tombstone_is_refused_and_dead_lettered_with_no_original():
    with pytest.raises(InvalidEvent, match=re.escape(TOMBSTONE)):
        parse_record(None)
    assert msgspec.json.decode(dead_letter(None, TOMBSTONE, "events", 0, 1))["original_b64"] == ""


@pytest.mark.parametrize("field", ["event_id", "tenant", "name"])
@pytest.mark.parametrize("unit", ["x", "é", "😀"])
def test_event_id_tenant_and_name_are_capped_in_bytes(field, unit):
    fits = unit * (MAX_FIELD_BYTES // len(unit.encode()))
    parse_record(msgspec.json.encode({**GOOD, field: fits}))
    with pytest.raises(InvalidEvent, match=f"^{field} is over {MAX_FIELD_BYTES} bytes$"):
        parse_record(msgspec.json.encode({**GOOD, field: fits + unit}))


def test_nesting_is_bounded_where_the_jvm_engine_bounds_it():
    """The top-level object is level 1: MAX_DEPTH - 1 arrays inside it fit, one more does not (Python
    used to accept up to ~1000 levels, then raise RecursionError)."""
    def nested(n: int) -> bytes:
        return msgspec.json.encode(GOOD)[:-1] + b',"p":' + b"[" * n + b"]" * n + b"}"

    parse_record(nested(MAX_DEPTH - 1))
    for n in (MAX_DEPTH, 5_000, 30_000):
        with pytest.raises(InvalidEvent, match=f"nested deeper than {MAX_DEPTH} levels"):
            parse_record(nested(n))


def test_an_error_before_the_deep_part_is_the_reason():
    head = b'{"event_id":"e1","ts":"x","p":'
    with pytest.raises(InvalidEvent, match=r"^schema: Expected `int`, got `str` - at `\$.ts`$"):
        parse_record(head + b"[" * 1_000 + b"]" * 1_000 + b"}")
    with pytest.raises(InvalidEvent, match=r"invalid character \(byte 0\)"):
        parse_record(b"\xef\xbb\xbf" + b"[" * 1_000)


def test_brackets_inside_strings_do_not_nest():
    parse_record(msgspec.json.encode({**GOOD, "values": {"s": "[" * 1_000 + '\\"{' * 300}}))


def test_a_rule_nested_too_deep_for_python_json_is_a_reason():
    catalogue = load_catalogue(ROOT / "conf" / "stats.yaml")
    rules = RuleSet(catalogue, [])
    reason = rules.apply_change("r", b"[" * 100_000)
    assert reason == "rule is not JSON: nested too deep"


def test_far_future_records_keep_the_contract_and_only_the_append_time_refuses_them():
    rng = random.Random(3)
    for i in range(50):
        _, value = EVENT_CLASS["far_future"].make(rng, i)
        assert parse_record(value).ts > time.time() * 1000
        with pytest.raises(InvalidEvent, match=EVENT_CLASS["far_future"].reason):
            parse_appended(value, int(time.time() * 1000))


def test_hostile_tenants_rules_are_accepted_and_name_distinct_tenants():
    catalogue = load_catalogue(ROOT / "conf" / "stats.yaml")
    rules = RuleSet(catalogue, [])
    records = list(tenant_rules())
    for r in records:
        assert r.key is not None and rules.apply_change(r.key.decode(), r.value) is None
    assert len({msgspec.json.decode(r.value or b"")["tenant"] for r in records}) == len(records) == len(rules.rules)
