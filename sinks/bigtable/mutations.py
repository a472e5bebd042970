"""The Bigtable rows for one evaluated event: its event-log row and its user's profile row."""

from __future__ import annotations

import msgspec
from google.cloud.bigtable.data.mutations import RowMutationEntry, SetCell

from operators.events import Event
from sinks.bigtable import keys, schema

# Bigtable cell timestamps are int64 microseconds at millisecond granularity.
MAX_CELL_MS = (2**63 - 1) // 1000


class Evaluation(msgspec.Struct, frozen=True):
    """The evaluation record (docs/bigtable.md); stats/segments stay raw JSON, stored as they came."""

    event_id: str
    tenant: str
    user_id: str
    ts: int
    seq: int
    stats: msgspec.Raw
    segments: msgspec.Raw


_event_decoder = msgspec.json.Decoder(Event)
_evaluation_decoder = msgspec.json.Decoder(Evaluation)


def _micros(ms: int, what: str) -> int:
    if not 0 <= ms <= MAX_CELL_MS:
        raise ValueError(f"{what} {ms} is outside 0..{MAX_CELL_MS}, not storable as a cell timestamp")
    return ms * 1000


def decode_event(event_json: bytes) -> Event:
    return _event_decoder.decode(event_json)


def event_entry(event: Event, event_json: bytes, width: int) -> RowMutationEntry:
    """The event's row: payload as encoded upstream (event_json), cell time = event time, so
    retention is by event time and a rewrite replaces the cell instead of adding a version."""
    at = _micros(event.ts, "event ts")
    key = keys.event_key(event.tenant, event.user_id, event.ts, event.event_id, width)
    return RowMutationEntry(
        key,
        [
            SetCell(schema.EVENTS_FAMILY, schema.PAYLOAD, event_json, at),
            SetCell(schema.EVENTS_FAMILY, schema.NAME, event.name.encode(), at),
        ],
    )


def profile_entry(evaluation_json: bytes, width: int) -> RowMutationEntry:
    """The user's profile row: every column at cell time = seq, so the highest seq wins whatever
    order the writes land in, and a replayed evaluation overwrites its own cells."""
    ev = _evaluation_decoder.decode(evaluation_json)
    at = _micros(ev.seq, "seq")
    family = schema.PROFILE_FAMILY
    return RowMutationEntry(
        keys.profile_key(ev.tenant, ev.user_id, width),
        [
            SetCell(family, schema.STATS, bytes(ev.stats), at),
            SetCell(family, schema.SEGMENTS, bytes(ev.segments), at),
            SetCell(family, schema.TS, str(ev.ts).encode(), at),
            SetCell(family, schema.EVENT_ID, ev.event_id.encode(), at),
            SetCell(family, schema.SEQ, str(ev.seq).encode(), at),
        ],
    )
