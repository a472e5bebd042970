import base64

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.events import (
    MAX_RECORD_BYTES,
    MAX_TS,
    MAX_USER_ID_BYTES,
    Event,
    InvalidEvent,
    dead_letter,
    encode_event,
    parse_record,
)

GOOD = {"event_id": "e1", "user_id": "u1", "ts": 1_700_000_000_000, "name": "purchase",
        "values": {"amount": 1200, "member": True, "plan": "basic", "age": None, "ratio": 0.5}}


def encode(obj) -> bytes:
    return msgspec.json.encode(obj)


def test_valid_event_defaults_tenant():
    event = parse_record(encode(GOOD))
    assert event == Event("e1", "u1", 1_700_000_000_000, "purchase", GOOD["values"], "default")


def test_values_may_be_omitted():
    event = parse_record(encode({k: v for k, v in GOOD.items() if k != "values"}))
    assert event.values == {}


@pytest.mark.parametrize("raw, reason", [
    (b"{not json", "not UTF-8 JSON"),
    (b"\xff\xfe", "not UTF-8 JSON"),
    (encode({k: v for k, v in GOOD.items() if k != "user_id"}), "user_id"),
    (encode({**GOOD, "ts": "yesterday"}), "ts"),
    (encode({**GOOD, "ts": 1.5}), "ts"),
    (encode({**GOOD, "ts": -1}), "negative"),
    (encode({**GOOD, "user_id": ""}), "user_id is empty"),
    (encode({**GOOD, "user_id": "x" * (MAX_USER_ID_BYTES + 1)}), "over 256 bytes"),
    (encode({**GOOD, "tenant": ""}), "tenant is empty"),
    (encode({**GOOD, "values": {"nested": {"a": 1}}}), "values"),
    (encode({**GOOD, "values": [1, 2]}), "values"),
    (encode({**GOOD, "values": {"blob": "x" * MAX_RECORD_BYTES}}), "byte limit"),
    (encode([GOOD]), "schema"),
    # Hostile input: each of these once failed a job or is at a boundary.
    (encode({**GOOD, "ts": MAX_TS + 1}), "ts is after"),
    (encode({**GOOD, "ts": 2**64}), "ts"),
    (b'{"event_id":"e","user_id":"u","ts":1,"name":"n","values":{"a":"\xff"}}', "not UTF-8 JSON"),
    (b'{"event_id":"e","user_id":"u\xed\xa0\x80","ts":1,"name":"n"}', "not UTF-8 JSON"),
    (b'{"event_id":"e","user_id":"u\\ud800","ts":1,"name":"n"}', "not UTF-8 JSON"),
    (b'{"event_id":"e","user_id":"u","ts":1,"name":"n","values":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}",
     "values"),
    (b'{"event_id":"e","user_id":"u","ts":1,"name":"n","values":{"a":1e400}}', "out of range"),
    (b"null", "schema"),
    (b"", "not UTF-8 JSON"),
])
def test_invalid_records_name_their_reason(raw, reason):
    with pytest.raises(InvalidEvent, match=reason):
        parse_record(raw)


def test_user_id_limit_counts_bytes_not_characters():
    parse_record(encode({**GOOD, "user_id": "é" * (MAX_USER_ID_BYTES // 2)}))
    with pytest.raises(InvalidEvent):
        parse_record(encode({**GOOD, "user_id": "é" * (MAX_USER_ID_BYTES // 2 + 1)}))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_either_parse_or_raise_invalid(raw):
    try:
        parse_record(raw)
    except InvalidEvent as exc:
        assert str(exc)


def test_encode_round_trips():
    event = parse_record(encode(GOOD))
    assert parse_record(encode_event(event)) == event


def test_dead_letter_keeps_original_bytes_and_origin():
    raw = b"\xff not json"
    record = msgspec.json.decode(dead_letter(raw, "why", "events", 3, 42))
    assert record["reason"] == "why"
    assert (record["topic"], record["partition"], record["offset"]) == ("events", 3, 42)
    assert base64.b64decode(record["original_b64"]) == raw
