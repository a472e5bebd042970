"""Request bodies to events: the engine's contract decides, the tenant is the key's."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.event_time import parse_appended
from operators.events import MAX_USER_ID_BYTES, parse_record
from serving.validation import Refused, event_of

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10))
bodies = st.fixed_dictionaries(
    {"user_id": st.text(max_size=300), "name": st.text(max_size=20)},
    optional={"event_id": st.text(max_size=300), "ts": st.integers(-10, 2**62),
              "values": st.dictionaries(st.text(max_size=8), scalars, max_size=4)},
)


@settings(max_examples=300, deadline=None)
@given(bodies)
def test_an_accepted_body_is_an_event_the_engine_accepts(body: dict) -> None:
    try:
        event, raw = event_of(orjson.dumps(body), "acme", now_ms=1_700_000_000_000)
    except Refused as refused:
        assert refused.status == 400 and refused.reason
        return
    parsed = parse_record(raw)  # the engine's contract takes it as it is
    # ...and the job's event-time check too: the record's append time comes after now.
    assert parse_appended(raw, 1_700_000_000_000) == parsed
    assert parsed == event and parsed.tenant == "acme"
    assert (parsed.user_id, parsed.name) == (body["user_id"], body["name"])
    assert parsed.ts == body.get("ts", 1_700_000_000_000)
    assert parsed.event_id == body.get("event_id", parsed.event_id) and parsed.event_id


def test_event_id_and_ts_are_filled_in() -> None:
    a, _ = event_of(b'{"user_id": "u1", "name": "view"}', "acme", now_ms=5)
    b, _ = event_of(b'{"user_id": "u1", "name": "view"}', "acme", now_ms=5)
    assert a.ts == 5 and a.event_id != b.event_id and len(a.event_id) == 32


@pytest.mark.parametrize(("body", "reason"), [
    (b"{", "not UTF-8 JSON"),
    (b"[]", "schema: Expected `object`"),
    (b'{"user_id": "u1"}', "schema: Object missing required field `name`"),
    (b'{"user_id": "u1", "name": "v", "extra": 1}', "schema: Object contains unknown field `extra`"),
    (b'{"user_id": 7, "name": "v"}', "schema: Expected `str`, got `int`"),
    (b'{"user_id": "u1", "name": "v", "ts": true}', "schema: Expected `int | null`, got `bool`"),
    (b'{"user_id": "", "name": "v"}', "user_id is empty"),
    (orjson.dumps({"user_id": "u" * (MAX_USER_ID_BYTES + 1), "name": "v"}), "user_id is over 256 bytes"),
    (orjson.dumps({"user_id": "u", "name": "v", "event_id": "e" * 257}), "event_id is over 256 bytes"),
    (b'{"user_id": "u1", "name": "v", "ts": -1}', "ts is negative"),
    (b'{"user_id": "u1", "name": "v", "values": {"a": [1]}}', "schema: Expected `bool | int | float | str | null`"),
])
def test_invalid_bodies_are_400_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(Refused) as refused:
        event_of(body, "acme")
    assert refused.value.status == 400 and refused.value.reason.startswith(reason), refused.value.reason


def test_another_tenant_in_the_body_is_403_and_the_same_one_is_fine() -> None:
    with pytest.raises(Refused) as refused:
        event_of(b'{"user_id": "u1", "name": "v", "tenant": "other"}', "acme")
    assert refused.value.status == 403
    event, _ = event_of(b'{"user_id": "u1", "name": "v", "tenant": "acme"}', "acme")
    assert event.tenant == "acme"


def test_a_ts_too_far_ahead_of_the_front_clock_is_400_as_the_job_would_dead_letter_it() -> None:
    event, _ = event_of(b'{"user_id": "u1", "name": "v", "ts": 60005}', "acme", now_ms=5)
    assert event.ts == 60_005
    with pytest.raises(Refused) as refused:
        event_of(b'{"user_id": "u1", "name": "v", "ts": 60006}', "acme", now_ms=5)
    assert refused.value.status == 400
    assert refused.value.reason == ("ts is 60001 ms after the record's append time 5, over the 60000 ms allowed "
                                    "(events.max_future_skew_ms)")
    event_of(b'{"user_id": "u1", "name": "v", "ts": 60006}', "acme", now_ms=5, max_future_skew_ms=60_001)
