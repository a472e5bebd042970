"""The contract between the two engines: the same script through the Python engine (operators/, the
reference) and the JVM engine (jvm/engine) gives byte-identical output lines (segstream/replay.py).

Scripts are generated: hot users in two tenants, late and far-future events (windows slide,
sessions split, users expire), retries (an earlier event_id sent again, with the same or another
content, within and beyond the de-duplication horizon), hostile and edge values (int64 bounds, int/double kinds, -0.0,
subnormals, huge doubles, unicode, nested-looking strings), invalid records, expiry timers, rules
added, changed, deleted and refused mid-stream, signed or not, by an operator or a tenant, and
erase commands valid and forged (docs/security.md); plus the project's own traffic generator at
volume. A difference fails with the first differing line and the script to replay it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from operators import erasure
from operators.ownership import ERASE, RULE, sign
from segstream.config import PROJECT_ROOT
from segstream.produce import TrafficSpec, generate
from segstream.replay import jvm_replay, python_replay

pytestmark = pytest.mark.slow  # starts a JVM per example

CATALOGUE = yaml.safe_load((PROJECT_ROOT / "conf" / "stats.yaml").read_text())
RULES = yaml.safe_load((PROJECT_ROOT / "conf" / "rules.yaml").read_text())["rules"]
# A short expiry so that generated scripts cross it; the rest of the catalogue as shipped.
SHORT_EXPIRY = {**CATALOGUE, "expire_after": "6h"}
# De-duplication that forgets quickly (3 events, 30 minutes), so that retries cross both bounds.
SHORT_DEDUP = {**SHORT_EXPIRY, "dedup_events": 3, "dedup_horizon": "30m"}
DAY = 86_400_000
T0 = 1_790_000_000_000

# Rules to add or change mid-stream: valid ones over every kind of stat and the event, and invalid
# ones (unknown names, bad syntax, refused constructs, wrong types).
RULE_POOL = [
    "total_spent > 1000",
    "avg_purchase != null && avg_purchase >= 5000",
    "max_purchase == 9223372036854775807",
    "spent_7d > 1000.5 || purchases_30d >= 2",
    "distinct_pages >= 3 && page_views > 2",
    "country == 'JP' || last_device == 'ios'",
    "sessions >= 2 && events_total > sessions",
    "event.name == 'purchase' && has(event.values.amount) && event.values.amount >= 1000",
    "event.values.plan == 'pro'",
    "size(event.values) > 2",
    "last_seen - first_seen > 3600000",
    "is_member",
    "total_spent / 0 > 1",
    "nope > 1",
    "purchases >",
    "'x'.matches('\\\\d')",
    "1",
]

INT64 = 2**63
values = st.one_of(
    st.integers(-INT64, INT64 - 1),
    st.sampled_from([0, 1, -1, INT64 - 1, -INT64, 2**53 + 1, 999, 1000, 5000]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 0.1, 1e308, -1e308, 5e-324, 1e23, 1000.0, 5000.5, 1e16]),
    st.text(max_size=8),
    st.sampled_from(["JP", "ios", "android", "/a", "/b", "p1", "p2", "é", "😀", "pro"]),
    st.booleans(),
    st.none(),
)
FIELDS = ["amount", "country", "device", "path", "product_id", "member", "plan"]
NAMES = ["page_view", "purchase", "add_to_cart", "identify", "search", "other"]


SIGNING_KEYS = ["current", "previous"]


def rule_change(draw, key: str, value: str | None, tenant: str, signed: bool) -> str:
    """A rule record; signed: by an operator, by the tenant (in scope or not), forged, or not at all."""
    change: dict = {"key": key, "value": value}
    if signed:
        how = draw(st.sampled_from(["operator", "operator", "tenant", "forged", "unsigned", "other key"]))
        keys = ["guessed"] if how == "forged" else SIGNING_KEYS[1:] if how == "other key" else SIGNING_KEYS
        owner = tenant if how == "tenant" else ""
        raw = None if value is None else value.encode()
        change["signature"] = None if how == "unsigned" else sign(keys, RULE, key.encode(), owner, raw).decode()
    return json.dumps({"rule_change": change}, ensure_ascii=False)


def erase_command(draw, tenant: str, user: str, erasure_id: str) -> str:
    """An erase command: valid (an operator's or the tenant's), forged, another tenant's, or mis-keyed."""
    how = draw(st.sampled_from(["operator", "tenant", "tenant", "forged", "other tenant", "mis-keyed", "unsigned"]))
    value = erasure.encode(erasure_id, tenant, user)
    key = (user + "!" if how == "mis-keyed" else user).encode()
    owner = {"tenant": tenant, "other tenant": "beta"}.get(how, "")
    signature = sign(["guessed"] if how == "forged" else SIGNING_KEYS, ERASE, key, owner, value).decode()
    return json.dumps({"control": {"key": key.decode(), "value": value.decode(),
                                   "signature": None if how == "unsigned" else signature}}, ensure_ascii=False)


@st.composite
def scripts(draw) -> list[str]:
    catalogue = draw(st.sampled_from([CATALOGUE, SHORT_EXPIRY, SHORT_DEDUP]))
    lines = [json.dumps({"catalogue": catalogue}), json.dumps({"rules": RULES})]
    # Signed rule records and erase commands (docs/security.md): most scripts check signatures.
    signed = draw(st.booleans()) or draw(st.booleans())
    if signed:
        lines.append(json.dumps({"signing_keys": SIGNING_KEYS}))
    skew = draw(st.sampled_from([None, 0, 1, 60_000]))
    if skew is not None:
        lines.append(json.dumps({"max_future_skew_ms": skew}))
    users = [("default", "u1"), ("default", "u2"), ("acme", "u1"), ("acme", "x\u0000y")]
    ts = T0
    sent: list[dict] = []
    for n in range(draw(st.integers(1, 120))):
        kind = draw(st.sampled_from(["event"] * 12 + ["late", "jump", "invalid", "timer", "rule", "delete"]
                                    + ["retry"] * 3 + ["erase"] * signed))
        if kind == "retry" and sent:
            record = dict(draw(st.sampled_from(sent[-8:])))
            if draw(st.booleans()):  # another content under the same event_id: the first one still wins
                record["ts"] = ts
                record["values"] = {}
            lines.append(json.dumps({"event": json.dumps(record, ensure_ascii=False)}, ensure_ascii=False))
            continue
        if kind == "retry":
            kind = "event"
        tenant, user = draw(st.sampled_from(users))
        if kind == "erase":
            lines.append(erase_command(draw, tenant, user, f"x{n}"))
            continue
        if kind == "rule":
            rule_id = draw(st.sampled_from(["r1", "r2", "high_value_member", f"{tenant}:r3"]))
            rule = {"id": rule_id, "description": "generated", "when": draw(st.sampled_from(RULE_POOL))}
            if draw(st.booleans()):
                rule["tenant"] = tenant
            lines.append(rule_change(draw, rule_id, json.dumps(rule), tenant, signed))
            continue
        if kind == "delete":
            lines.append(rule_change(draw, draw(st.sampled_from(["r1", "r2", "nope", f"{tenant}:r3"])), None,
                                     tenant, signed))
            continue
        if kind == "timer":
            lines.append(json.dumps({"timer": {"tenant": tenant, "user_id": user,
                                               "now": ts + draw(st.integers(0, 2 * DAY))}}))
            continue
        if kind == "invalid":
            lines.append(json.dumps({"event": draw(st.sampled_from([
                "{", "null", '{"event_id":"x","user_id":"","ts":1,"name":"n"}',
                '{"event_id":"x","user_id":"u","ts":-1,"name":"n"}',
                '{"event_id":"x","user_id":"u","ts":253402300800000,"name":"n"}',
                '{"event_id":"x","user_id":"u","ts":1,"name":"n","values":{"a":[1]}}',
            ]))}))
            continue
        step = {"event": draw(st.integers(0, 20 * 60_000)),
                "late": -draw(st.integers(0, 2 * 3_600_000)),
                "jump": draw(st.integers(DAY // 2, 40 * DAY))}[kind]
        event_ts = max(0, ts + step)
        if kind != "late":
            ts = event_ts
        record = {"event_id": f"e{n}", "tenant": tenant, "user_id": user, "ts": event_ts,
                  "name": draw(st.sampled_from(NAMES)),
                  "values": draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=4))}
        line = {"event": json.dumps(record, ensure_ascii=False)}
        # The broker's append time, around ts: mostly after it, sometimes before by up to a
        # minute and a bit (the skew bound), or far before (a far-future ts: a dead letter).
        when = draw(st.sampled_from(["none", "after", "near", "far"]))
        if when != "none":
            line["append_time"] = event_ts - {"after": -draw(st.integers(0, DAY)),
                                              "near": draw(st.integers(0, 61_000)),
                                              "far": draw(st.integers(DAY, 400 * DAY))}[when]
        if when in ("none", "after"):
            sent.append(record)
        lines.append(json.dumps(line, ensure_ascii=False))
    return lines


# Where both engines refuse a rule, the reason's tail is the CEL parser's (cel-rust and CEL-Java
# word syntax errors differently) or the JSON parser's: compared up to these prefixes.
PARSER_WORDED = ("`when` does not compile:", "rule is not JSON:")


def normalised(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        if line.startswith('{"dead_letter":"rule: '):
            for prefix in PARSER_WORDED:
                if prefix in line:
                    line = line[:line.index(prefix) + len(prefix)] + ' …"}'
        out.append(line)
    return out


def assert_same(script: list[str], where: Path | None = None) -> list[str]:
    python, jvm = normalised(python_replay(script)), normalised(jvm_replay(script))
    if python != jvm:
        first = next((i for i, (a, b) in enumerate(zip(python, jvm, strict=False)) if a != b),
                     min(len(python), len(jvm)))
        if where is not None:
            where.write_text("\n".join(script) + "\n")
        pytest.fail(f"the engines differ at output line {first} ({len(python)} vs {len(jvm)} lines)\n"
                    f"python: {python[first] if first < len(python) else '<none>'}\n"
                    f"jvm:    {jvm[first] if first < len(jvm) else '<none>'}\n"
                    f"script: {where or '(not saved)'}; replay with segstream.replay")
    return python


# No shrinking: each example starts a JVM, and a failure saves its script for replay anyway.
@settings(max_examples=30, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scripts())
def test_generated_scripts_give_identical_output(script):
    assert_same(script, Path("/tmp/segstream-differential-failure.jsonl"))


@pytest.mark.timeout(900)
def test_the_traffic_generator_at_volume(tmp_path):
    """20,000 records of the project's own traffic (1 % invalid, 3 tenants, out-of-order events)
    with the shipped catalogue and rules, rules changed twice on the way, and one record in 50 sent
    again a few records later (a retry)."""
    lines = [json.dumps({"catalogue": CATALOGUE}), json.dumps({"rules": RULES})]
    records = list(generate(TrafficSpec(events=20_000, users=300, tenants=3, invalid_ratio=0.01,
                                        now=T0 + 60 * DAY, seed=7)))
    for i, record in enumerate(records):
        if i == 5_000:
            rule = {"id": "new_spender", "description": "d", "when": "total_spent > 20000 && sessions >= 2"}
            lines.append(json.dumps({"rule_change": {"key": "new_spender", "value": json.dumps(rule)}}))
        if i == 12_000:
            lines.append(json.dumps({"rule_change": {"key": "new_visitor", "value": None}}))
        for value in [record.value] + ([records[i - 5].value] if i % 50 == 49 else []):
            try:
                lines.append(json.dumps({"event": value.decode("utf-8")}))
            except UnicodeDecodeError:  # the generator's invalid records include bytes that are not UTF-8
                lines.append(json.dumps({"event_b64": base64.b64encode(value).decode()}))
    outputs = assert_same(lines, tmp_path / "script.jsonl")
    assert len(outputs) >= 20_000
    assert sum(line.startswith('{"duplicate":') for line in outputs) >= 300, "the retries were recognised"


def test_doubles_print_as_python_prints_them():
    """Every power of two (where the round-trip interval is lopsided), and random doubles over the
    whole exponent range, as a `last` stat: the JSON number text must match byte for byte."""
    import random

    rng = random.Random(5)
    doubles = ([2.0**k for k in range(-1074, 1024)] + [-(2.0**-24), 1e23, 5e-324, 1.7976931348623157e308]
               + [rng.random() * 10 ** rng.randint(-300, 300) for _ in range(3_000)])
    lines = [json.dumps({"catalogue": {"stats": [{"name": "x", "agg": "last", "field": "v"}]}})]
    lines += [json.dumps({"event": json.dumps({"event_id": str(i), "user_id": "u", "ts": 1, "name": "n",
                                               "values": {"v": v}})}) for i, v in enumerate(doubles)]
    assert len(assert_same(lines)) == len(doubles)
