"""The event contract (docs/events.md): decoding and validation of one Kafka record.

Pure Python; the Flink job calls `parse_record` once per record and routes failures to the
dead-letter topic with `dead_letter`.
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from operators.pii import Policy

MAX_RECORD_BYTES = 64 * 1024
MAX_USER_ID_BYTES = 256
# The longest event_id, tenant and name (UTF-8 bytes). With user_id's cap a Bigtable row key
# (sinks/bigtable/keys.py: hash prefix, tenant, user_id, reversed ts, event_id, each escaped, so
# up to 3 bytes a byte) stays below Bigtable's 4 KiB limit: 64 + 4 + 3 * 3 * 256 + 19 < 4096.
MAX_FIELD_BYTES = 256
# The deepest nesting accepted anywhere in a record, the top-level object being level 1 (as the JVM
# engine's Jackson counts): msgspec would recurse into deeper ignored fields and, some way past
# this, raise RecursionError instead of a reason.
MAX_DEPTH = 256
# The latest event time accepted: 9999-12-31T23:59:59.999Z. Far enough for any real clock, and
# small enough that ts + expire_after and Bigtable's microsecond cell timestamps (ts * 1000) never
# overflow 64 bits.
MAX_TS = 253_402_300_799_999
DEFAULT_TENANT = "default"
# The reason for a record without a value (a Kafka tombstone); = the JVM job's ParseEvents.TOMBSTONE.
TOMBSTONE = "record has no value (a tombstone)"

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
# Strings (whose brackets do not nest) and brackets.
_STRUCTURE = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]')


def _too_deep(raw: bytes) -> int | None:
    """The byte offset of the first bracket opened beyond MAX_DEPTH, if any."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return None
    depth = 0
    for match in _STRUCTURE.finditer(raw):
        char = raw[match.start()]
        if char in b"[{":
            depth += 1
            if depth > MAX_DEPTH:
                return match.start()
        elif char in b"]}":
            depth -= 1
    return None


def _decode(raw: bytes) -> Event:
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"schema: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"not UTF-8 JSON: {exc}") from None


def parse_record(raw: bytes | None) -> Event:
    """Decode and validate one record value (None: a tombstone); raise InvalidEvent with a reason."""
    if raw is None:
        raise InvalidEvent(TOMBSTONE)
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
    deep = _too_deep(raw)
    if deep is not None:
        # What comes before the bracket too deep is read first: an error there is the reason (as a
        # streaming parser finds it first); if none, that prefix is merely truncated.
        try:
            _decode(raw[:deep])
        except InvalidEvent as exc:
            if str(exc) != "not UTF-8 JSON: Input data was truncated":
                raise
        raise InvalidEvent(f"not UTF-8 JSON: JSON is malformed: nested deeper than {MAX_DEPTH} levels")
    event = _decode(raw)
    if not event.user_id:
        raise InvalidEvent("user_id is empty")
    if len(event.user_id.encode()) > MAX_USER_ID_BYTES:
        raise InvalidEvent(f"user_id is over {MAX_USER_ID_BYTES} bytes")
    if not event.tenant:
        raise InvalidEvent("tenant is empty")
    _check_length("tenant", event.tenant)
    if not event.event_id:
        raise InvalidEvent("event_id is empty")
    _check_length("event_id", event.event_id)
    if not event.name:
        raise InvalidEvent("name is empty")
    _check_length("name", event.name)
    if event.ts < 0:
        raise InvalidEvent("ts is negative")
    if event.ts > MAX_TS:
        raise InvalidEvent(f"ts is after {MAX_TS} (9999-12-31T23:59:59.999Z)")
    return event


def _check_length(field: str, value: str) -> None:
    if len(value) * 4 > MAX_FIELD_BYTES and len(value.encode("utf-8", "surrogatepass")) > MAX_FIELD_BYTES:
        raise InvalidEvent(f"{field} is over {MAX_FIELD_BYTES} bytes")


def decode_event(raw: bytes) -> Event:
    """Decode a record that `parse_record` already accepted (skips the extra checks)."""
    return _decoder.decode(raw)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def dead_letter(raw: bytes | None, reason: str, topic: str, partition: int, offset: int,
                policy: Policy | None = None) -> bytes:
    """The dead-letter record: the original bytes (base64, they may not be text; none for a
    tombstone) and where they came from. Under a PII `policy` that redacts the record's tenant, no
    original: `original_redacted`, its length and HMAC and its readable fields, redacted
    (operators/pii.py `dead_letter_fields`)."""
    raw = raw or b""
    letter: dict[str, object] = {"reason": reason, "topic": topic, "partition": partition, "offset": offset}
    redacted = policy.dead_letter_fields(raw) if policy is not None else None
    if redacted is None:
        letter["original_b64"] = base64.b64encode(raw).decode("ascii")
    else:
        letter["original_redacted"] = True
        letter.update(redacted)
    return _encoder.encode(letter)
