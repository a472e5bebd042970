"""The cells written for one evaluated event (docs/bigtable.md, "Schema")."""

from __future__ import annotations

import orjson
import pytest

from operators.events import Event, encode_event
from sinks.bigtable import keys, mutations, schema

W = 4
EVENT = Event("e_1", "u_1", 1_700_000_000_123, "purchase", {"amount": 9.5}, "acme")
EVENT_JSON = encode_event(EVENT)


def evaluation(**over) -> bytes:
    doc = {
        "event_id": "e_1",
        "tenant": "acme",
        "user_id": "u_1",
        "ts": 1_700_000_000_123,
        "seq": 42,
        "stats": {"purchases": 3, "amount_sum": 20.5},
        "segments": ["buyer", "vip"],
        "entered": ["vip"],
        "exited": [],
    }
    return orjson.dumps(doc | over)


def cells(entry) -> dict[tuple[str, bytes], tuple[bytes, int]]:
    out = {}
    for m in entry.mutations:
        d = m._to_dict()["set_cell"]
        out[(d["family_name"], d["column_qualifier"])] = (d["value"], d["timestamp_micros"])
    return out


def test_event_row_holds_the_payload_as_sent_and_its_seq_and_rules_version_at_event_time():
    entry = mutations.event_entry(mutations.decode_event(EVENT_JSON), EVENT_JSON, W, 42, 3)
    assert entry.row_key == keys.event_key("acme", "u_1", EVENT.ts, "e_1", W)
    micros = EVENT.ts * 1000
    assert cells(entry) == {
        (schema.EVENTS_FAMILY, schema.PAYLOAD): (EVENT_JSON, micros),
        (schema.EVENTS_FAMILY, schema.NAME): (b"purchase", micros),
        (schema.EVENTS_FAMILY, schema.SEQ): (b"42", micros),
        (schema.EVENTS_FAMILY, schema.RULES_VERSION): (b"3", micros),
    }


def test_entries_take_seq_and_rules_version_from_the_evaluation():
    event_row, profile_row = mutations.entries(EVENT_JSON, evaluation(rules_version=7), W)
    assert cells(event_row)[(schema.EVENTS_FAMILY, schema.SEQ)][0] == b"42"
    assert cells(event_row)[(schema.EVENTS_FAMILY, schema.RULES_VERSION)][0] == b"7"
    assert cells(profile_row)[(schema.PROFILE_FAMILY, schema.RULES_VERSION)] == (b"7", 42_000)


def test_profile_row_is_stamped_with_seq_so_the_newest_evaluation_wins():
    entry = mutations.profile_entry(evaluation(), W)
    assert entry.row_key == keys.profile_key("acme", "u_1", W)
    at = 42 * 1000
    assert cells(entry) == {
        (schema.PROFILE_FAMILY, schema.STATS): (orjson.dumps({"purchases": 3, "amount_sum": 20.5}), at),
        (schema.PROFILE_FAMILY, schema.SEGMENTS): (b'["buyer","vip"]', at),
        (schema.PROFILE_FAMILY, schema.TS): (b"1700000000123", at),
        (schema.PROFILE_FAMILY, schema.EVENT_ID): (b"e_1", at),
        (schema.PROFILE_FAMILY, schema.SEQ): (b"42", at),
        (schema.PROFILE_FAMILY, schema.RULES_VERSION): (b"0", at),  # absent: 0, as outside the job
    }
    newer = mutations.profile_entry(evaluation(seq=43), W)
    assert {ts for _, ts in cells(newer).values()} == {43_000}


def test_rewrites_are_identical_so_a_replay_overwrites_instead_of_adding():
    event = mutations.decode_event(EVENT_JSON)
    assert (mutations.event_entry(event, EVENT_JSON, W, 1, 0)._to_dict()
            == mutations.event_entry(event, EVENT_JSON, W, 1, 0)._to_dict())
    assert mutations.profile_entry(evaluation(), W)._to_dict() == mutations.profile_entry(evaluation(), W)._to_dict()
    assert mutations.event_entry(event, EVENT_JSON, W, 1, 0).is_idempotent()  # explicit timestamps: safe to retry


def test_times_that_do_not_fit_a_cell_timestamp_are_rejected():
    far = Event("e", "u", mutations.MAX_CELL_MS + 1, "n")
    with pytest.raises(ValueError, match="event ts"):
        mutations.event_entry(far, encode_event(far), W, 1, 0)
    with pytest.raises(ValueError, match="seq"):
        mutations.profile_entry(evaluation(seq=-1), W)
