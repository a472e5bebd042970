"""Reading the durable history back: events rows (with the seq and rules_version the job wrote on
each), live profiles, and the versioned rule log.

The events and profiles tables share the hash prefix, so one key range of the prefix holds whole
users in both tables: a range can be read (and its users replayed) with no other range's rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
from google.api_core import exceptions as gexc
from google.cloud.bigtable.data import BigtableDataClient, ReadRowsQuery, RowRange
from google.cloud.bigtable.data import row_filters as rf
from google.cloud.bigtable.data.exceptions import RetryExceptionGroup

from sinks.bigtable import BigtableUnavailable, keys, point_at_instance, schema
from sinks.bigtable.config import BigtableConfig

PROBE_TIMEOUT_S = 5.0
_UNREACHABLE = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, RetryExceptionGroup)
_UNESCAPE = re.compile(rb"%(25|5F)")


@dataclass(frozen=True)
class KeyRange:
    """Row keys from `start` (inclusive) to `end` (exclusive; None = the end of the table)."""

    start: bytes
    end: bytes | None


def prefix_ranges(width: int, parts: int, fraction: float = 1.0) -> list[KeyRange]:
    """The hash-prefix space (width hex digits), or its first `fraction`, cut into `parts`
    near-equal key ranges."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    space = 16**width
    top = space if fraction == 1 else max(1, round(space * fraction))
    parts = max(1, min(parts, top))
    bounds = [top * i // parts for i in range(parts + 1)]

    def key(n: int) -> bytes:
        return format(n, f"0{width}x").encode()

    return [KeyRange(b"" if i == 0 else key(bounds[i]),
                     None if i == parts - 1 and top == space else key(bounds[i + 1]))
            for i in range(parts)]


def user_range(tenant: str, user_id: str, width: int) -> KeyRange:
    """The user's profile row and events rows: from the profile key (the events prefix without its
    last `_`) to that key + "`" (the byte after "_"). Another user whose escaped id extends this one
    with a byte below "`" may fall in it too if their hash prefixes collide: callers keep only rows
    of the users they asked for."""
    profile = keys.profile_key(tenant, user_id, width)
    return KeyRange(profile, profile + b"`")


def unescape(field: bytes) -> str:
    return _UNESCAPE.sub(lambda m: b"%" if m.group(1) == b"25" else b"_", field).decode()


def split_profile_key(key: bytes) -> tuple[str, str]:
    _, tenant, user = key.split(keys.SEP)
    return unescape(tenant), unescape(user)


@dataclass(frozen=True)
class HistoryRow:
    tenant: str
    user_id: str
    seq: int | None  # None: written before event rows carried it
    rules_version: int | None
    payload: bytes  # the event as the job encoded it


@dataclass(frozen=True)
class LiveProfile:
    tenant: str
    user_id: str
    seq: int
    rules_version: int | None
    ts: int
    stats: dict
    segments: list[str]


def tenant_filter(tenant: str | None, width: int) -> rf.RowFilter | None:
    """Rows of one tenant only, decided by the server (RE2 on the row key)."""
    if tenant is None:
        return None
    return rf.RowKeyRegexFilter(rb"^[0-9a-f]{%d}_" % width + re.escape(keys.escape(tenant)) + rb"(_.*)?$")


class Reader:
    """One data client for a worker's reads (DoFn.setup), closed with close()."""

    def __init__(self, b: BigtableConfig, read_timeout_s: float = 3600.0, attempt_timeout_s: float = 60.0):
        point_at_instance(b)
        self.config = b
        self._client = BigtableDataClient(project=b.project)
        self._events = self._client.get_table(b.instance, b.events_table)
        self._profiles = self._client.get_table(b.instance, b.profiles_table)
        self._operation_timeout, self._attempt_timeout = read_timeout_s, attempt_timeout_s

    def close(self) -> None:
        self._client.close()

    def _query(self, r: KeyRange, tenant: str | None) -> ReadRowsQuery:
        # Every column of the row (not only those a replay needs): a qualifier filter cost the
        # emulator 94 instead of 12 µs per row and saved the client nothing (docs/benchmarks.md 9).
        newest = rf.CellsColumnLimitFilter(1)
        by_tenant = tenant_filter(tenant, self.config.hash_prefix_hex)
        return ReadRowsQuery(row_ranges=RowRange(start_key=r.start or None, end_key=r.end),
                             row_filter=newest if by_tenant is None else rf.RowFilterChain([by_tenant, newest]))

    def events(self, r: KeyRange, tenant: str | None = None) -> Iterator[HistoryRow]:
        """The range's events rows in key order: each user's rows one after the other."""
        user_key, who = b"", ("", "")
        for row in self._events.read_rows_stream(self._query(r, tenant),
                                                  operation_timeout=self._operation_timeout,
                                                  attempt_timeout=self._attempt_timeout):
            cells = {c.qualifier: c.value for c in row.cells}
            payload = cells.get(schema.PAYLOAD)
            if payload is None:
                continue
            # {prefix}_{tenant}_{user}_{reversed ts}_{event id}: the user from the key (no JSON parse),
            # unescaped once per user.
            prefix = row.row_key[:row.row_key.rindex(keys.SEP, 0, row.row_key.rindex(keys.SEP))]
            if prefix != user_key:
                user_key = prefix
                _, tenant_field, user_field = prefix.split(keys.SEP)
                who = (unescape(tenant_field), unescape(user_field))
            seq, version = cells.get(schema.SEQ), cells.get(schema.RULES_VERSION)
            yield HistoryRow(who[0], who[1], int(seq) if seq else None, int(version) if version else None, payload)

    def users(self, r: KeyRange, tenant: str | None = None, with_profiles: bool = False
              ) -> Iterator[tuple[tuple[str, str], list[HistoryRow], LiveProfile | None]]:
        """((tenant, user_id), events rows, live profile) of every user in the range. A user's rows
        are contiguous (they share the key prefix) and lie in one range of the hash prefix, as does
        their profile: no shuffle is needed to bring a user's history together."""
        profiles = {(p.tenant, p.user_id): p for p in self.profiles(r, tenant)} if with_profiles else {}
        current: tuple[str, str] | None = None
        rows: list[HistoryRow] = []
        for row in self.events(r, tenant):
            who = (row.tenant, row.user_id)
            if who != current:
                if current is not None:
                    yield current, rows, profiles.pop(current, None)
                current, rows = who, []
            rows.append(row)
        if current is not None:
            yield current, rows, profiles.pop(current, None)
        for who, profile in profiles.items():  # live profiles with no history
            yield who, [], profile

    def profiles(self, r: KeyRange, tenant: str | None = None) -> Iterator[LiveProfile]:
        for row in self._profiles.read_rows_stream(self._query(r, tenant),
                                                    operation_timeout=self._operation_timeout,
                                                    attempt_timeout=self._attempt_timeout):
            cells = {c.qualifier: c.value for c in row.cells}
            tenant_id, user = split_profile_key(row.row_key)
            version = cells.get(schema.RULES_VERSION)
            yield LiveProfile(tenant_id, user, int(cells[schema.SEQ]), int(version) if version else None,
                              int(cells[schema.TS]), orjson.loads(cells[schema.STATS]),
                              orjson.loads(cells[schema.SEGMENTS]))


def probe(b: BigtableConfig) -> None:
    """Raise BigtableUnavailable (one line) unless both tables answer within seconds."""
    point_at_instance(b)
    client = BigtableDataClient(project=b.project)
    where = b.emulator_host or "the production endpoint"
    try:
        for table_id in (b.events_table, b.profiles_table):
            table = client.get_table(b.instance, table_id)
            table.read_rows(ReadRowsQuery(limit=1), operation_timeout=PROBE_TIMEOUT_S,
                            attempt_timeout=PROBE_TIMEOUT_S / 2)
    except _UNREACHABLE:
        raise BigtableUnavailable(f"Bigtable {b.project}/{b.instance} at {where} did not answer within "
                                  f"{PROBE_TIMEOUT_S:.0f}s (is the emulator running? `segstream stack up`)") from None
    except gexc.NotFound as exc:
        raise BigtableUnavailable(f"Bigtable table missing at {where} ({exc.message}): "
                                  "run `segstream stack up`") from None
    finally:
        client.close()
