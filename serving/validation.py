"""A tracking request's body to the event record the engine will accept, or the reason why not.

The body is decoded strictly (unknown fields, wrong types: refused), completed (tenant from the
key, event_id and ts when absent) and then checked with operators.event_time.parse_appended (parse_record, and a
ts at most events.max_future_skew_ms ahead of the front's clock): the very
contract the engine applies to each Kafka record, so an event the front accepts is never a dead
letter.
"""

from __future__ import annotations

import time
import uuid
from typing import TypeVar

import msgspec

from operators.event_time import DEFAULT_MAX_FUTURE_SKEW_MS, parse_appended
from operators.events import Event, InvalidEvent, Scalar, encode_event


class TrackBody(msgspec.Struct, forbid_unknown_fields=True):
    user_id: str
    name: str
    event_id: str | None = None
    ts: int | None = None
    values: dict[str, Scalar] | None = None
    tenant: str | None = None


class Refused(Exception):
    """A request the front refuses: HTTP status and reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


T = TypeVar("T")
_body_decoder = msgspec.json.Decoder(TrackBody)
_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def _decode(decoder: msgspec.json.Decoder[T], raw: bytes) -> T:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise Refused(400, f"schema: {exc}") from None
    except msgspec.DecodeError as exc:
        raise Refused(400, f"not UTF-8 JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec's error for bad bytes in a string it decodes
        raise Refused(400, f"not UTF-8 JSON: invalid UTF-8 (byte {exc.start})") from None


def decode_body(raw: bytes) -> TrackBody:
    return _decode(_body_decoder, raw)


def decode_batch(raw: bytes, limit: int) -> list[TrackBody]:
    """A JSON array of at most `limit` event bodies; Refused 400 naming the first bad one."""
    items = _decode(_batch_decoder, raw)
    if not items:
        raise Refused(400, "the batch is empty")
    if len(items) > limit:
        raise Refused(400, f"the batch has {len(items)} events, over the limit of {limit}")
    bodies = []
    for i, item in enumerate(items):
        try:
            bodies.append(decode_body(bytes(item)))
        except Refused as refused:
            raise Refused(400, f"event {i}: {refused.reason}") from None
    return bodies


def build_event(body: TrackBody, tenant: str, now_ms: int | None = None,
                max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS) -> tuple[Event, bytes]:
    """The event of `body` for the key's `tenant` and its record value; Refused (403 for another
    tenant in the body, 400 with the contract's reason for an invalid event). A client's ts more than
    `max_future_skew_ms` after now is refused as the job would refuse it (its append time comes later
    than now, so the job would too)."""
    if body.tenant is not None and body.tenant != tenant:
        raise Refused(403, "the body's tenant is not the key's tenant")
    event = Event(
        event_id=body.event_id if body.event_id is not None else uuid.uuid4().hex,
        user_id=body.user_id,
        ts=body.ts if body.ts is not None else (now_ms if now_ms is not None else int(time.time() * 1000)),
        name=body.name,
        values=body.values or {},
        tenant=tenant,
    )
    raw = encode_event(event)
    try:
        parse_appended(raw, now_ms if now_ms is not None else int(time.time() * 1000), max_future_skew_ms)
    except InvalidEvent as exc:
        raise Refused(400, str(exc)) from None
    return event, raw


def event_of(raw_body: bytes, tenant: str, now_ms: int | None = None,
             max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS) -> tuple[Event, bytes]:
    return build_event(decode_body(raw_body), tenant, now_ms, max_future_skew_ms)
