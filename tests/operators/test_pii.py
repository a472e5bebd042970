"""The PII policy (operators/pii.py): properties of redaction at ingest and of redacted dead letters."""

import base64
import hashlib
import hmac

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from operators.events import MAX_RECORD_BYTES, InvalidEvent, dead_letter, encode_event, parse_record
from operators.pii import DEV_KEY, KEY_FIELDS, PiiConfig, Policy
from segstream.config import Settings

KEY = b"test-key"
# Every policed value carries this marker, which no hash (hex) and no kept field can contain, so
# "the marker appears nowhere" means "no policed raw value leaked".
MARK = "PII\u00a7"
POLICED = {"values.email": "hash", "values.phone": "drop", "values.ip": "hash"}
POLICY = Policy(KEY, {}, {"acme": POLICED, "all": {"values.plan": "keep", "values.*": "hash"}})

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)
pii_values = st.one_of(
    st.text(max_size=20).map(lambda s: MARK + s),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda i: f"{MARK}{i}"),
)
other_values = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
                         ).filter(lambda v: not (isinstance(v, str) and MARK in v))


def record(tenant: str, values: dict) -> bytes:
    return msgspec.json.encode({"event_id": "e1", "user_id": "u1", "ts": 5, "name": "n", "tenant": tenant,
                                "values": values})


@st.composite
def events(draw):
    values = draw(st.dictionaries(names.filter(lambda n: n not in ("email", "phone", "ip")), other_values,
                                  max_size=6))
    for field in ("email", "phone", "ip"):
        if draw(st.booleans()):
            values[field] = draw(pii_values)
    return values


@given(events())
def test_no_policed_raw_value_leaks_and_the_rest_is_kept(values):
    event = POLICY.redact(parse_record(record("acme", values)))
    text = encode_event(event).decode()
    assert MARK not in text
    assert "phone" not in event.values  # dropped
    for name, value in values.items():
        if name in ("email", "ip"):
            assert event.values[name] == hmac.new(KEY, msgspec.json.encode(value), hashlib.sha256).hexdigest()
        elif name != "phone":
            assert event.values[name] == value  # kept, unchanged
    assert (event.event_id, event.user_id, event.ts, event.name, event.tenant) == ("e1", "u1", 5, "n", "acme")


@given(events())
def test_an_unpoliced_tenant_keeps_every_field(values):
    event = parse_record(record("zeta", values))
    assert POLICY.redact(event) is event


@given(st.one_of(pii_values, other_values), st.binary(min_size=1, max_size=16))
def test_hashes_are_stable_and_keyed(value, other_key):
    a = Policy(KEY, {}, {}).hash_value(value)
    assert a == Policy(KEY, {}, {}).hash_value(value) and len(a) == 64
    if other_key != KEY:
        assert Policy(other_key, {}, {}).hash_value(value) != a


@given(events())
def test_values_star_hashes_all_but_the_named(values):
    values["plan"] = "pro"
    event = POLICY.redact(parse_record(record("all", values)))
    assert event.values["plan"] == "pro"
    assert set(event.values) == set(values)
    assert MARK not in encode_event(event).decode()
    # A hashed event is still a valid event: the history replays it as the job saw it.
    assert parse_record(encode_event(event)) == event


def test_a_redacted_event_over_the_contract_is_refused():
    values = {f"v{i}": 1 for i in range(3000)}
    raw = record("all", values)
    assert len(raw) < MAX_RECORD_BYTES
    with pytest.raises(InvalidEvent, match=r"bytes after redaction, over the 65536 byte limit"):
        POLICY.redact(parse_record(raw))


@given(events(), st.sampled_from(['"ts": "soon"', '"ts": -1', '"values": {"x": [1]}']))
def test_dead_letters_of_policed_records_keep_no_original(values, breakage):
    good = record("acme", values)
    raw = good[:-1] + b", " + breakage.encode() + b"}"  # a later duplicate field breaks the contract
    with pytest.raises(InvalidEvent) as why:
        parse_record(raw)
    letter = dead_letter(raw, str(why.value), "events", 1, 2, POLICY)
    text = letter.decode()
    assert MARK not in text and base64.b64encode(raw).decode() not in text
    d = msgspec.json.decode(letter)
    assert d["original_redacted"] is True and "original_b64" not in d
    assert d["original_length"] == len(raw)
    assert d["original_hmac"] == hmac.new(KEY, raw, hashlib.sha256).hexdigest()
    assert d["redacted"]["tenant"] == "acme" and d["redacted"]["user_id"] == "u1"


def test_dead_letters_of_unpoliced_and_unreadable_records():
    raw = b'{"tenant": "zeta", "ts": "x", "values": {"email": "a@b.c"}}'
    assert msgspec.json.decode(dead_letter(raw, "r", "events", 0, 1, POLICY))["original_b64"] == \
        base64.b64encode(raw).decode()
    strict_default = Policy(KEY, {"values.email": "drop"}, {"zeta": {}})
    d = msgspec.json.decode(dead_letter(b"a@b.c not json", "r", "events", 0, 1, strict_default))
    assert d == {"reason": "r", "topic": "events", "partition": 0, "offset": 1, "original_redacted": True,
                 "original_length": 14, "original_hmac": strict_default.hash(b"a@b.c not json")}
    # Without a policy: the original, as before.
    assert "original_b64" in msgspec.json.decode(dead_letter(raw, "r", "events", 0, 1))


@pytest.mark.parametrize("field", KEY_FIELDS)
def test_key_fields_cannot_be_policed(field):
    with pytest.raises(ValidationError, match="drive the engine"):
        PiiConfig(tenants={"acme": {field: "hash"}})


@pytest.mark.parametrize("path", ["values", "values.", "properties.email", "email"])
def test_only_values_paths(path):
    with pytest.raises(ValidationError, match="not a policed path"):
        PiiConfig(default={path: "drop"})


def test_the_key_comes_from_the_environment_or_a_file_never_the_yaml(tmp_path, monkeypatch):
    cfg = PiiConfig(default={"values.email": "hash"})
    monkeypatch.delenv("SEGSTREAM_PII_HMAC_KEY", raising=False)
    assert cfg.key() == DEV_KEY
    key_file = tmp_path / "pii.key"
    key_file.write_bytes(b"from-file\n")
    assert PiiConfig(default={"values.email": "hash"}, key_file=str(key_file)).key() == b"from-file"
    monkeypatch.setenv("SEGSTREAM_PII_HMAC_KEY", "from-env")
    assert PiiConfig(default={"values.email": "hash"}, key_file=str(key_file)).key() == b"from-env"
    with pytest.raises(ValidationError):
        PiiConfig(key="in-yaml")  # type: ignore[call-arg]


def test_the_section_in_settings_and_the_jvm_json(monkeypatch):
    monkeypatch.setenv("SEGSTREAM_PII__TENANTS", '{"acme": {"values.email": "hash"}}')
    settings = Settings()
    assert settings.pii.enabled and not PiiConfig().enabled  # the environment beats the file (and init)
    policy = msgspec.json.decode(settings.pii.policy().to_json())
    assert policy["tenants"] == {"acme": {"values.email": "hash"}} and policy["default"] == {}
