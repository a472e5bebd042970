"""Row keys (docs/bigtable.md, "Row keys").

events:   {prefix}_{tenant}_{user_id}_{reversed ts}_{event_id}
profiles: {prefix}_{tenant}_{user_id}

`_` separates fields, so it is escaped inside them (`%` -> `%25` first, then `_` -> `%5F`):
an escaped field never contains `_`, the encoding is reversible, hence keys are unique and
`user_prefix(t, u)` never matches another user's rows (user "a" vs "a_b").
"""

from __future__ import annotations

import hashlib

SEP = b"_"
MAX_TS = 2**63 - 1  # epoch ms; the widest a Java/Flink long timestamp can be
TS_WIDTH = len(str(MAX_TS))  # 19 digits, so decimal order == numeric order
MAX_KEY_BYTES = 4096  # Bigtable's row key limit


def escape(field: str) -> bytes:
    return field.replace("%", "%25").replace("_", "%5F").encode()


def hash_prefix(tenant: str, user_id: str, width: int) -> bytes:
    """Lowercase hex of sha256 over the escaped pair: stable across processes and releases
    (unlike Python's salted hash()), spreads users evenly over tablets."""
    if not 1 <= width <= 64:
        raise ValueError(f"hash prefix width must be 1..64 hex digits, got {width}")
    digest = hashlib.sha256(escape(tenant) + SEP + escape(user_id)).hexdigest()
    return digest[:width].encode()


def user_prefix(tenant: str, user_id: str, width: int) -> bytes:
    """Every events row of this user starts with these bytes, and no other user's row does."""
    return SEP.join((hash_prefix(tenant, user_id, width), escape(tenant), escape(user_id))) + SEP


def reverse_ts(ts: int) -> bytes:
    """Fixed-width decimal of MAX_TS - ts: newer events sort first."""
    if not 0 <= ts <= MAX_TS:
        raise ValueError(f"ts {ts} is outside 0..{MAX_TS}")
    return str(MAX_TS - ts).zfill(TS_WIDTH).encode()


def event_key(tenant: str, user_id: str, ts: int, event_id: str, width: int) -> bytes:
    # The whole (escaped) event_id is the discriminator: exact, so distinct events never share a
    # row and a replayed event lands on its own row again.
    key = user_prefix(tenant, user_id, width) + reverse_ts(ts) + SEP + escape(event_id)
    return _checked(key)


def profile_key(tenant: str, user_id: str, width: int) -> bytes:
    return _checked(SEP.join((hash_prefix(tenant, user_id, width), escape(tenant), escape(user_id))))


def _checked(key: bytes) -> bytes:
    if len(key) > MAX_KEY_BYTES:
        raise ValueError(f"row key is {len(key)} bytes, over Bigtable's {MAX_KEY_BYTES}")
    return key
