"""The event contract (docs/events.md): decoding and validation of one Kafka record.

Pure Python; the Flink job calls `parse_record` once per record and routes failures to the
dead-letter topic with `dead_letter`.
"""

from __future__ import annotations

import base64

import msgspec

MAX_RECORD_BYTES = 64 * 1024
MAX_USER_ID_BYTES = 256
# The latest event time accepted: 9999-12-31T23:59:59.999Z. Far enough for any real clock, and
# small enough that ts + expire_after and Bigtable's microsecond cell timestamps (ts * 1000) never
# overflow 64 bits.
MAX_TS = 253_402_300_799_999
DEFAULT_TENANT = "default"

Scalar = int | float | str | bool | None


class Event(msgspec.Struct, frozen=True):
    event_id: str
    user_id: str
    ts: int
    name: str
    values: dict[str, Scalar] = {}
    tenant: str = DEFAULT_TENANT


class InvalidEvent(ValueError):
    """A record that breaks the contract; the message is the dead-letter reason."""


_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


def parse_record(raw: bytes) -> Event:
    """Decode and validate one record value; raise InvalidEvent with a reason."""
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidEvent(f"record is {len(raw)} bytes, over the {MAX_RECORD_BYTES} byte limit")
    if not raw.isascii():
        # The whole record must be UTF-8, ignored fields too (the JVM engine's parser checks every
        # byte); msgspec alone lets bad bytes in skipped fields pass and raises UnicodeDecodeError,
        # not DecodeError, for bad bytes in strings it decodes.
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"not UTF-8 JSON: invalid UTF-8 (byte {exc.start})") from None
    try:
        event = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"schema: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"not UTF-8 JSON: {exc}") from None
    if not event.user_id:
        raise InvalidEvent("user_id is empty")
    if len(event.user_id.encode()) > MAX_USER_ID_BYTES:
        raise InvalidEvent(f"user_id is over {MAX_USER_ID_BYTES} bytes")
    if not event.tenant:
        raise InvalidEvent("tenant is empty")
    if not event.event_id:
        raise InvalidEvent("event_id is empty")
    if not event.name:
        raise InvalidEvent("name is empty")
    if event.ts < 0:
        raise InvalidEvent("ts is negative")
    if event.ts > MAX_TS:
        raise InvalidEvent(f"ts is after {MAX_TS} (9999-12-31T23:59:59.999Z)")
    return event


def decode_event(raw: bytes) -> Event:
    """Decode a record that `parse_record` already accepted (skips the extra checks)."""
    return _decoder.decode(raw)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def dead_letter(raw: bytes, reason: str, topic: str, partition: int, offset: int) -> bytes:
    """The dead-letter record: the original bytes (base64, they may not be text) and where they came from."""
    return _encoder.encode(
        {
            "reason": reason,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "original_b64": base64.b64encode(raw).decode("ascii"),
        }
    )
