"""Tenant keys: `segstream tenant add NAME` makes a random key, prints it once and stores only its
sha256 with the tenant's name; the front looks a presented key up by its hash.

The file (serving.keys_file, default .segstream/tenants.json, mode 0600) is a JSON object
{"keys": [{"id", "tenant", "sha256", "admin", "created"}]}; `id` is the first 12 hex digits of the
hash, for listing and revoking one key of a tenant that has several (rotation). It is replaced
atomically on every change, and a running front picks changes up within a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from operators.events import MAX_FIELD_BYTES

KEY_PREFIX = "sk_"


@dataclass(frozen=True)
class KeyEntry:
    id: str
    tenant: str
    sha256: str
    admin: bool
    created: int  # epoch seconds


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_tenant_name(name: str) -> str:
    """The tenant name if the event contract takes it (non-empty, at most 256 UTF-8 bytes, no
    control characters); else ValueError."""
    if not name or not name.strip():
        raise ValueError("tenant name is empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_FIELD_BYTES:
        raise ValueError(f"tenant name is over {MAX_FIELD_BYTES} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError("tenant name has control characters")
    return name


class KeyStore:
    """The keys file: add, list, revoke (the CLI), and lookup by key (the front)."""

    def __init__(self, path: Path):
        self.path = path
        self._by_hash: dict[str, KeyEntry] = {}
        self._loaded_stamp: tuple[int, int] | None = None
        self._checked = 0.0

    def entries(self) -> list[KeyEntry]:
        if not self.path.exists():
            return []
        data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        return [KeyEntry(**entry) for entry in data.get("keys", [])]

    def _write(self, entries: list[KeyEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tenants-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"keys": [asdict(e) for e in entries]}, out, indent=1)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def add(self, tenant: str, admin: bool = False) -> tuple[str, KeyEntry]:
        """A new key for `tenant`: (the key, to show once; its stored entry)."""
        check_tenant_name(tenant)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        h = digest(key)
        entry = KeyEntry(id=h[:12], tenant=tenant, sha256=h, admin=admin, created=int(time.time()))
        self._write([*self.entries(), entry])
        return key, entry

    def revoke(self, name_or_id: str) -> list[KeyEntry]:
        """Remove every key of the tenant named so, or the one key with this id; return them."""
        entries = self.entries()
        gone = [e for e in entries if name_or_id in (e.tenant, e.id)]
        if gone:
            self._write([e for e in entries if e not in gone])
        return gone

    def lookup(self, key: str) -> KeyEntry | None:
        """The entry of a presented key, or None. Re-reads the file when it changed (checked at
        most once a second)."""
        now = time.monotonic()
        if now - self._checked >= 1.0 or self._loaded_stamp is None:
            self._checked = now
            try:
                st = self.path.stat()
                stamp = (st.st_mtime_ns, st.st_ino)
            except FileNotFoundError:
                stamp = (0, 0)
            if stamp != self._loaded_stamp:
                self._by_hash = {e.sha256: e for e in self.entries()}
                self._loaded_stamp = stamp
        return self._by_hash.get(digest(key))
