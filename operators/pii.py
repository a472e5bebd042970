"""Per-tenant PII policy: drop, hash (keyed HMAC-SHA256) or keep fields of an event at ingest.

Applied right after the event contract (`operators/events.py parse_record`), before anything else
sees the event, so the live state, the evaluations, the Bigtable history and a recompute from that
history all see the same redacted values (docs/security.md, "Item 6"). The JVM engine's twin is
jvm/engine/.../Redaction.java: the same paths, the same hashes, the same dead-letter fields; the
differential test holds them equal (segstream/replay.py, `{"pii": ...}`).

Only `values.<name>` (and `values.*`, every value not named) may be policed. The key fields
(event_id, tenant, user_id, ts, name) drive the engine: keyed state, Bigtable row keys, the Kafka
record key, de-duplication, event time, rule matching; hashing user_id would have to be repeated in
every one of those and in every read (profiles, history, erasure), so the config refuses them.

A hashed value is the lowercase hex HMAC-SHA256, under the configured key, of the value's JSON text
as msgspec writes it (`"a@b.c"` with its quotes, `42`, `4.2`, `true`, `null`): the same bytes in
both engines. Rules and stats that read a hashed field see that string (equality and distinct
counts still work; sums and comparisons do not).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec
from pydantic import BaseModel, ConfigDict, field_validator

from operators.events import MAX_RECORD_BYTES, Event, InvalidEvent, _too_deep, encode_event

Action = Literal["drop", "hash", "keep"]
# The dev default key: the demo and tests run without configuring one; production sets
# pii.key_env's variable or pii.key_file (docs/security.md). A warning is logged when it is used.
DEV_KEY = b"segstream-dev-pii-key (not secret)"
ALL_VALUES = "values.*"
KEY_FIELDS = ("event_id", "tenant", "user_id", "ts", "name")

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode


def _check_path(path: str) -> str:
    head, dot, field = path.partition(".")
    if head in KEY_FIELDS and not dot:
        raise ValueError(
            f"{path!r} cannot be policed: the key fields ({', '.join(KEY_FIELDS)}) drive the engine (keyed "
            "state, Bigtable row keys, the record key, de-duplication, event time); pseudonymise user ids "
            "before they reach segstream")
    if head != "values" or not dot or not field:
        raise ValueError(f"{path!r} is not a policed path: use values.<name> or values.*")
    return path


class PiiConfig(BaseModel):
    """The `pii:` section of conf/segstream.yaml: field path -> drop | hash | keep, per tenant."""

    # An unknown key is an error: a `key:` in the YAML (never) or a misspelt `tenant:` must not pass.
    model_config = ConfigDict(extra="forbid")

    # The policy of every tenant not listed in `tenants`, and of dead letters whose tenant cannot be
    # read. Empty: keep everything (the default: no PII policy).
    default: dict[str, Action] = {}
    tenants: dict[str, dict[str, Action]] = {}
    # Where the HMAC key comes from (never the YAML): the environment variable named here, else the
    # file; neither set: DEV_KEY with a warning (the demo).
    key_env: str = "SEGSTREAM_PII_HMAC_KEY"
    key_file: str | None = None

    @field_validator("default")
    @classmethod
    def _default_paths(cls, v: dict[str, Action]) -> dict[str, Action]:
        for path in v:
            _check_path(path)
        return v

    @field_validator("tenants")
    @classmethod
    def _tenant_paths(cls, v: dict[str, dict[str, Action]]) -> dict[str, dict[str, Action]]:
        for tenant, fields in v.items():
            if not tenant:
                raise ValueError("an empty tenant name")
            for path in fields:
                _check_path(path)
        return v

    @property
    def enabled(self) -> bool:
        return any(a != "keep" for a in self.default.values()) or any(
            a != "keep" for fields in self.tenants.values() for a in fields.values())

    def key(self) -> bytes:
        env = os.environ.get(self.key_env, "") if self.key_env else ""
        if env:
            return env.encode()
        if self.key_file:
            key = Path(self.key_file).read_bytes().strip()
            if not key:
                raise ValueError(f"pii.key_file {self.key_file} is empty")
            return key
        if self.enabled:
            log.warning("pii: no HMAC key configured (%s, pii.key_file): using the dev default, "
                        "hashes are not secret", self.key_env)
        return DEV_KEY

    def policy(self) -> Policy:
        return Policy(self.key(), self.default, self.tenants)


class Policy:
    """The resolved policy: a key and, per tenant, path -> action (only drop and hash kept)."""

    def __init__(self, key: bytes, default: dict[str, Action], tenants: dict[str, dict[str, Action]]) -> None:
        self.key = key
        self.default = _Fields(default)
        self.tenants = {t: _Fields(f) for t, f in tenants.items()}

    def for_tenant(self, tenant: str | None) -> _Fields:
        return self.default if tenant is None else self.tenants.get(tenant, self.default)

    def hash(self, data: bytes) -> str:
        return hmac.new(self.key, data, hashlib.sha256).hexdigest()

    def hash_value(self, value: object) -> str:
        return self.hash(_encode(value))

    def to_json(self) -> str:
        """The policy for the JVM (Redaction.fromJson): the key as hex, only what redacts."""
        return _encode({
            "key_hex": self.key.hex(),
            "default": self.default.actions,
            "tenants": {t: f.actions for t, f in self.tenants.items()},
        }).decode()

    def redact(self, event: Event) -> Event:
        """The event as the engine must see it; raise InvalidEvent if it no longer fits the contract."""
        fields = self.for_tenant(event.tenant)
        if not fields.active:
            return event
        redacted = Event(event_id=event.event_id, user_id=event.user_id, ts=event.ts, name=event.name,
                         values=self._values(fields, event.values), tenant=event.tenant)
        size = len(encode_event(redacted))
        if size > MAX_RECORD_BYTES:
            raise InvalidEvent(f"record is {size} bytes after redaction, over the {MAX_RECORD_BYTES} byte limit")
        return redacted

    def _values(self, fields: _Fields, values: Mapping[str, object]) -> dict:
        out: dict[str, object] = {}
        for name, value in values.items():
            action = fields.action(name)
            if action == "keep":
                out[name] = value
            elif action == "hash":
                out[name] = self.hash_value(value)
        return out

    def dead_letter_fields(self, raw: bytes | None) -> dict | None:
        """What a dead letter keeps of a record whose policy redacts: None if that policy keeps
        everything (the dead letter keeps the original), else the HMAC and length of the original
        and its readable contract fields, redacted (docs/events.md)."""
        parsed = _lenient(raw)
        tenant = _tenant_of(parsed)
        fields = self.for_tenant(tenant)
        if not fields.active:
            return None
        raw = raw or b""
        out: dict[str, object] = {"original_length": len(raw), "original_hmac": self.hash(raw)}
        if isinstance(parsed, dict):
            readable: dict[str, object] = {}
            for key in ("event_id", "tenant", "user_id", "name"):
                if isinstance(parsed.get(key), str):
                    readable[key] = parsed[key]
            ts = parsed.get("ts")
            if type(ts) is int and -(2**63) <= ts < 2**63:
                readable["ts"] = ts
            values = parsed.get("values")
            if isinstance(values, dict):
                readable["values"] = self._values(fields, {k: v for k, v in values.items() if _scalar(v)})
            out["redacted"] = readable
        return out


def _scalar(value: object) -> bool:
    if type(value) is int:
        return -(2**63) <= value < 2**63  # larger ones the JVM reads as BigInteger: left out by both
    return value is None or isinstance(value, (str, bool, float))


def _lenient(raw: bytes | None) -> object:
    """The record as plain JSON, or None when it is not (any reason: the dead letter has one)."""
    if not raw or len(raw) > MAX_RECORD_BYTES or _too_deep(raw) is not None:
        return None  # as the JVM's reader, which stops at the contract's depth
    try:
        return msgspec.json.decode(raw)
    except Exception:  # noqa: BLE001 - anything unreadable is simply unreadable
        return None


def _tenant_of(parsed: object) -> str | None:
    """The record's tenant: its `tenant` string, the contract's default when absent, None when unreadable."""
    if not isinstance(parsed, dict):
        return None
    tenant = parsed.get("tenant", "default")
    return tenant if isinstance(tenant, str) and tenant else None


class _Fields:
    """One tenant's actions: named values, then `values.*` for the rest."""

    def __init__(self, actions: dict[str, Action]) -> None:
        self.actions = {p: a for p, a in actions.items()}
        self.named = {p.removeprefix("values."): a for p, a in actions.items() if p != ALL_VALUES}
        self.rest: Action = actions.get(ALL_VALUES, "keep")
        self.active = any(a != "keep" for a in actions.values())

    def action(self, name: str) -> Action:
        return self.named.get(name, self.rest)
