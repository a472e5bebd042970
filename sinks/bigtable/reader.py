"""Reading the event log and profiles back (`segstream history` / `segstream profile`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
from google.api_core import exceptions as gexc
from google.cloud.bigtable.data import BigtableDataClient, ReadRowsQuery, RowRange
from google.cloud.bigtable.data import row_filters as rf
from google.cloud.bigtable.data.exceptions import RetryExceptionGroup

from sinks.bigtable import BigtableUnavailable, keys, point_at_instance, schema
from sinks.bigtable.config import BigtableConfig

# Interactive commands: fail in seconds, not after the client's default 10 minutes.
OPERATION_TIMEOUT_S = 5.0
ATTEMPT_TIMEOUT_S = 2.0
_UNREACHABLE = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, RetryExceptionGroup)


def read_history(
    config: BigtableConfig,
    tenant: str,
    user_id: str,
    limit: int | None = None,
    since_ts: int | None = None,
) -> list[dict]:
    """The user's events (as sent), newest first, within retention and at or after since_ts."""
    b = config
    oldest = max(since_ts or 0, _now_ms() - b.retention_days * 86_400_000)
    prefix = keys.user_prefix(tenant, user_id, b.hash_prefix_hex)
    # Rows sort newest first, so "ts >= oldest" is a key range that ends after the rows at `oldest`
    # ("`" is the byte after the "_" that follows the reversed ts).
    query = ReadRowsQuery(
        row_ranges=RowRange(start_key=prefix, end_key=prefix + keys.reverse_ts(oldest) + b"`"),
        limit=limit,
        # GC of expired cells is asynchronous: filter by cell time as well, so nothing past
        # retention is ever returned.
        row_filter=rf.RowFilterChain(
            [
                rf.ColumnQualifierRegexFilter(schema.PAYLOAD),
                rf.TimestampRangeFilter(start=_datetime_ms(oldest)),
                rf.CellsColumnLimitFilter(1),
            ]
        ),
    )
    with _table(b, b.events_table) as table:
        rows = _call(b, table.read_rows, query)
    return [orjson.loads(row.cells[0].value) for row in rows]


def read_profile(config: BigtableConfig, tenant: str, user_id: str) -> dict | None:
    """The user's latest profile: {tenant, user_id, stats, segments, ts, event_id, seq}."""
    b = config
    key = keys.profile_key(tenant, user_id, b.hash_prefix_hex)
    with _table(b, b.profiles_table) as table:
        row = _call(b, table.read_row, key, row_filter=rf.CellsColumnLimitFilter(1))
    if row is None:
        return None
    cells = {cell.qualifier: cell.value for cell in row.cells}
    return {
        "tenant": tenant,
        "user_id": user_id,
        "stats": orjson.loads(cells[schema.STATS]),
        "segments": orjson.loads(cells[schema.SEGMENTS]),
        "ts": int(cells[schema.TS]),
        "event_id": cells[schema.EVENT_ID].decode(),
        "seq": int(cells[schema.SEQ]),
    }


class _table:
    """A data client and one table, closed together."""

    def __init__(self, b: BigtableConfig, table_id: str):
        point_at_instance(b)
        self._client = BigtableDataClient(project=b.project)
        self._table = self._client.get_table(b.instance, table_id)

    def __enter__(self):
        return self._table

    def __exit__(self, *exc):
        self._client.close()


def _call(b: BigtableConfig, method, *args, **kwargs):
    try:
        return method(*args, operation_timeout=OPERATION_TIMEOUT_S, attempt_timeout=ATTEMPT_TIMEOUT_S, **kwargs)
    except _UNREACHABLE as exc:
        where = b.emulator_host or "the production endpoint"
        raise BigtableUnavailable(
            f"Bigtable {b.project}/{b.instance} at {where} did not answer within {OPERATION_TIMEOUT_S:.0f}s "
            "(is the emulator running? `segstream stack up`)"
        ) from exc
    except gexc.NotFound as exc:
        raise BigtableUnavailable(f"Bigtable table missing ({exc.message}): run `segstream stack up`") from exc


def _now_ms() -> int:
    return int(time.time() * 1000)


def _datetime_ms(ms: int) -> datetime:
    # The filter takes datetimes; cells have millisecond granularity, as does this.
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
