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
    # The count of rules-topic records the job had applied (docs/events.md); absent outside the job.
    rules_version: int = 0


_event_decoder = msgspec.json.Decoder(Event)
_evaluation_decoder = msgspec.json.Decoder(Evaluation)


def _micros(ms: int, what: str) -> int:
    if not 0 <= ms <= MAX_CELL_MS:
        raise ValueError(f"{what} {ms} is outside 0..{MAX_CELL_MS}, not storable as a cell timestamp")
    return ms * 1000


def decode_event(event_json: bytes) -> Event:
    return _event_decoder.decode(event_json)


def event_entry(event: Event, event_json: bytes, width: int, seq: int, rules_version: int) -> RowMutationEntry:
    """The event's row: payload as encoded upstream (event_json), cell time = event time, so
    retention is by event time and a rewrite replaces the cell instead of adding a version.
    `seq` and `rules_version` are those of the event's evaluation: a replay (batch/) processes a
    user's events in seq order, the live engine's, under the rule set of that version."""
    at = _micros(event.ts, "event ts")
    key = keys.event_key(event.tenant, event.user_id, event.ts, event.event_id, width)
    family = schema.EVENTS_FAMILY
    return RowMutationEntry(
        key,
        [
            SetCell(family, schema.PAYLOAD, event_json, at),
            SetCell(family, schema.NAME, event.name.encode(), at),
            SetCell(family, schema.SEQ, str(seq).encode(), at),
            SetCell(family, schema.RULES_VERSION, str(rules_version).encode(), at),
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
            SetCell(family, schema.RULES_VERSION, str(ev.rules_version).encode(), at),
        ],
    )


def entries(event_json: bytes, evaluation_json: bytes, width: int) -> tuple[RowMutationEntry, RowMutationEntry]:
    """Both rows of one (event, evaluation) pair of the job's mirror, as the JVM sink's
    BigtableRows.of makes them: (events row, profile row)."""
    ev = _evaluation_decoder.decode(evaluation_json)
    event = decode_event(event_json)
    return event_entry(event, event_json, width, ev.seq, ev.rules_version), profile_entry(evaluation_json, width)
