"""Who wrote a record: signed rule records and erase commands (docs/security.md, "Rule ownership").

The raw `rules` topic and the control records on `events` are only as trustworthy as their writers.
Every record that changes rules or erases a user carries the header `segstream-signature`:

    v1:<64 hex digits of HMAC-SHA256>:<owner>

`owner` is the tenant the writer acts for (the front: the tenant key's tenant), or empty for an
operator (the CLI, an admin key). The HMAC is over the purpose ("rule" or "erase"), the record key,
the owner and the value, each length-prefixed (4 bytes big-endian, so no two inputs share a
message), with a signing key from configuration (`ownership:`). Any accepted key verifies (several
during a rotation); the first one signs.

What a valid signature allows (`rule_scope`, `erase_scope`): an operator anything; a tenant owner
only rule ids `{owner}:...` whose rule names that tenant, and only its own users' erasure.

The JVM engine does the same with the same reasons (jvm/engine/.../Ownership.java): change both
together.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

HEADER = "segstream-signature"
VERSION = "v1"
RULE = "rule"
ERASE = "erase"
# The demo's and the local stack's key: public, so it protects nothing. Production sets its own
# (`ownership.keys_env` or `ownership.keys_file`) and `ownership.allow_dev_key: false`.
DEV_KEY = "segstream-dev-signing-key (public: not for production)"

NO_SIGNATURE = f"no signature (header {HEADER})"
MALFORMED = f"malformed signature (header {HEADER}: v1:<64 hex>:<owner>)"
MISMATCH = "signature matches no accepted key"


class OwnershipConfig(BaseModel):
    """The `ownership:` section: where the signing keys come from."""

    # An environment variable holding the keys, comma-separated, the signing one first.
    keys_env: str = "SEGSTREAM_SIGNING_KEYS"
    # Or a file with one key a line, the signing one first (mode 0600; relative: under the project root).
    keys_file: str | None = None
    # With neither set: use DEV_KEY (the demo, the local stack, the tests). False in production, so
    # a deployment that forgot its key fails at start instead of trusting a public one.
    allow_dev_key: bool = True


class SigningError(ValueError):
    """No signing key is configured (and the dev key is not allowed)."""


def signing_keys(config: OwnershipConfig, root: Path | None = None) -> list[str]:
    """The accepted keys, the signing one first: the environment variable, else the file, else the dev key."""
    from_env = os.environ.get(config.keys_env, "")
    keys = [k.strip() for k in from_env.split(",") if k.strip()]
    if not keys and config.keys_file:
        path = Path(config.keys_file)
        if not path.is_absolute() and root is not None:
            path = root / path
        keys = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not keys and config.allow_dev_key:
        keys = [DEV_KEY]
    if not keys:
        raise SigningError(f"no signing key: set ${config.keys_env} or ownership.keys_file "
                           "(ownership.allow_dev_key is false)")
    return keys


def _message(purpose: str, key: bytes | None, owner: str, value: bytes | None) -> bytes:
    parts = [purpose.encode(), key or b"", owner.encode("utf-8", "surrogatepass"), value or b""]
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _mac(secret: str, purpose: str, key: bytes | None, owner: str, value: bytes | None) -> str:
    return hmac.new(secret.encode("utf-8"), _message(purpose, key, owner, value), hashlib.sha256).hexdigest()


def sign(keys: Sequence[str], purpose: str, key: bytes | None, owner: str, value: bytes | None) -> bytes:
    """The header value for a record, signed with the first key."""
    return f"{VERSION}:{_mac(keys[0], purpose, key, owner, value)}:{owner}".encode("utf-8", "surrogatepass")


def verify(keys: Sequence[str], purpose: str, key: bytes | None, value: bytes | None,
           header: bytes | None) -> tuple[str | None, str | None]:
    """(owner, None) if `header` signs the record with an accepted key, else (None, reason)."""
    if not header:
        return None, NO_SIGNATURE
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError:
        return None, MALFORMED
    version, sep, rest = text.partition(":")
    mac, sep2, owner = rest.partition(":")
    if version != VERSION or not sep or not sep2 or len(mac) != 64 or any(c not in "0123456789abcdef" for c in mac):
        return None, MALFORMED
    for secret in keys:
        if hmac.compare_digest(mac, _mac(secret, purpose, key, owner, value)):
            return owner, None
    return None, MISMATCH


def rule_scope(owner: str, rule_id: str) -> str | None:
    """None if `owner` may write rule id `rule_id`, else the reason (an operator may write any)."""
    if owner and not rule_id.startswith(owner + ":"):
        return f"rule id {rule_id!r} is outside its owner's scope {owner + ':'!r}"
    return None


def rule_tenant(owner: str, rule_id: str, tenant: str | None) -> str | None:
    """None if a rule of `owner` may name `tenant` (None: every tenant), else the reason."""
    if owner and tenant != owner:
        return f"rule {rule_id!r}: tenant {tenant!r} is not its owner's {owner!r}"
    return None


def erase_scope(owner: str, tenant: str) -> str | None:
    """None if `owner` may erase users of `tenant`, else the reason."""
    if owner and tenant != owner:
        return f"tenant {tenant!r} is not its owner's {owner!r}"
    return None
