"""Erase commands: control records on the events topic that clear one user (docs/security.md, "Erasure").

A record on `events` that carries the `segstream-signature` header is a control record, never an
event (events carry no such header). Its value:

    {"control": "erase", "erasure_id": "...", "tenant": "...", "user_id": "..."}

keyed by the user_id, like the user's events: Kafka's default partitioner puts it in the user's
partition, after every event of the user produced before it, so the engine clears the state after
those and nothing written before the erasure comes back. Signed (operators/ownership.py, purpose
"erase") by an operator or by the user's own tenant.

On a valid one the engine drops everything it keeps for the user (statistics, segments, seq,
de-duplication receipts: one state blob) and acknowledges it with `acknowledgement`; the user's
next event starts afresh (seq 1). The JVM engine parses the same way with the same reasons
(jvm/engine/.../Erasure.java).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple

from operators import ownership
from operators.events import MAX_FIELD_BYTES

FIELDS = ("control", "erasure_id", "tenant", "user_id")
CONTROL = "erase"


class Erasure(NamedTuple):
    erasure_id: str
    tenant: str
    user_id: str
    owner: str  # who signed it: a tenant, or "" for an operator


class InvalidErasure(ValueError):
    """A control record that is not a valid erase command; the message is the dead-letter reason."""


def encode(erasure_id: str, tenant: str, user_id: str) -> bytes:
    return json.dumps({"control": CONTROL, "erasure_id": erasure_id, "tenant": tenant, "user_id": user_id},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse(raw: bytes | None, record_key: bytes | None, signature: bytes | None, keys: Sequence[str]) -> Erasure:
    """The erase command of a control record, or InvalidErasure with the reason."""
    owner, reason = ownership.verify(keys, ownership.ERASE, record_key, raw, signature)
    if owner is None:
        raise InvalidErasure(f"erase: {reason}")
    try:
        data = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError):
        raise InvalidErasure("erase: not a JSON object") from None
    if not isinstance(data, dict):
        raise InvalidErasure("erase: not a JSON object")
    if sorted(data) != list(FIELDS) or not all(isinstance(data[f], str) for f in FIELDS) \
            or data["control"] != CONTROL:
        raise InvalidErasure('erase: expected exactly {"control": "erase", "erasure_id", "tenant", "user_id"} '
                             "as strings")
    for field in FIELDS[1:]:
        size = len(data[field].encode("utf-8", "surrogatepass"))
        if not 1 <= size <= MAX_FIELD_BYTES:
            raise InvalidErasure(f"erase: `{field}` must be 1 to {MAX_FIELD_BYTES} bytes of UTF-8")
    if record_key != data["user_id"].encode("utf-8", "surrogatepass"):
        # Keyed otherwise, it could land in another partition than the user's events: no ordering.
        raise InvalidErasure("erase: the record key is not the user_id")
    refused = ownership.erase_scope(owner, data["tenant"])
    if refused is not None:
        raise InvalidErasure(f"erase: {refused}")
    return Erasure(data["erasure_id"], data["tenant"], data["user_id"], owner)


def acknowledgement(erasure: Erasure, had_state: bool) -> dict:
    """What the job writes on the `erasures` topic (and to the front's reply topic) once the user's
    keyed state is gone. `had_state`: whether there was any."""
    return {"erasure_id": erasure.erasure_id, "tenant": erasure.tenant, "user_id": erasure.user_id,
            "owner": erasure.owner, "erased": "state", "had_state": had_state}
