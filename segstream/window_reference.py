"""The window job's results recomputed from scratch (like segstream/reference.py for the main job):
which windows an event falls in, each window's aggregate, and which windows are surges. Pure
Python, no Flink; tests/segstream/test_window_reference.py checks the math, the integration tests
compare the job's output with it (docs/windows.md gives the same rules in prose)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from operators.events import Event
from segstream.windows import WindowDef


def window_starts(ts: int, size_ms: int, slide_ms: int) -> list[int]:
    """The starts of the windows [start, start + size) holding ts, aligned to the epoch, oldest first
    (one for tumbling windows, size / slide for hopping ones)."""
    last = ts // slide_ms * slide_ms
    return list(range(last - size_ms + slide_ms, last + 1, slide_ms))


def dimension_value(d: WindowDef, event: Event) -> str | None:
    if d.values is None:
        return None
    raw = event.values.get(d.values.field)
    return raw if isinstance(raw, str) and raw in d.values.allow else d.values.other


def summand(d: WindowDef, event: Event) -> int | float | None:
    if d.sum is None:
        return None
    v = event.values.get(d.sum)
    if isinstance(v, bool):
        return None
    if isinstance(v, int) and -(2**63) <= v < 2**63:
        return v
    if isinstance(v, float) and v == v and abs(v) != float("inf"):
        return v
    return None


def output_key(tenant: str, window_id: str, value: str | None) -> str:
    """The record key of an aggregate (and of its alert): tenant/window[/value]."""
    return f"{tenant}/{window_id}" + ("" if value is None else f"/{value}")


@dataclass
class Aggregate:
    count: int = 0
    sums: list[int | float] = field(default_factory=list)
    users: set[str] = field(default_factory=set)

    def record(self, d: WindowDef, tenant: str, value: str | None, start: int) -> dict:
        """The aggregate record the job writes for this window."""
        out: dict = {"window": d.id, "tenant": tenant, "event": d.event,
                     "dimension": None if d.values is None else d.values.field, "value": value,
                     "window_start": start, "window_end": start + d.size_ms, "count": self.count}
        if d.sum is not None:
            if not self.sums:
                out["sum"] = None
            elif all(isinstance(s, int) for s in self.sums) and -(2**63) <= sum(self.sums) < 2**63:
                out["sum"] = sum(self.sums)
            else:
                out["sum"] = float(sum(self.sums))
        if d.distinct_users:
            out["distinct_users"] = len(self.users)
        return out


WindowKey = tuple[str, str, str | None, int]  # (window id, tenant, value, start)


def aggregates(defs: list[WindowDef], events: Iterable[Event],
               late: set[str] | None = None) -> dict[WindowKey, Aggregate]:
    """Every window's aggregate over `events` (valid events; those whose ids are in `late` are left
    out: they reached the job after their windows were emitted)."""
    out: dict[WindowKey, Aggregate] = defaultdict(Aggregate)
    for e in events:
        if late and e.event_id in late:
            continue
        for d in defs:
            if e.name != d.event or (d.tenants is not None and e.tenant not in d.tenants):
                continue
            value = dimension_value(d, e)
            s = summand(d, e)
            for start in window_starts(e.ts, d.size_ms, d.slide_ms):
                agg = out[(d.id, e.tenant, value, start)]
                agg.count += 1
                if s is not None:
                    agg.sums.append(s)
                agg.users.add(e.user_id)
    return dict(out)


def surges(d: WindowDef, counts: dict[tuple[str, str | None, int], int],
           emitted: set[tuple[str, str | None, int]] | None = None) -> list[dict]:
    """The alerts of definition `d` given its windows' counts ((tenant, value, start) -> count, the
    non-empty windows). A window alerts when its count is >= min_count and > factor x baseline,
    baseline = the mean count of the K windows starting size, 2 size, ... K size before it (a window
    without events counts 0), provided the key's first window starts at least K size before it.
    `emitted`: the windows the job emitted (default: all of `counts`)."""
    if d.surge is None:
        return []
    k, size = d.surge.baseline_windows, d.size_ms
    first: dict[tuple[str, str | None], int] = {}
    for tenant, value, start in counts:
        key = (tenant, value)
        first[key] = min(first.get(key, start), start)
    alerts = []
    for (tenant, value, start), count in sorted(counts.items(), key=lambda kv: (kv[0][2], kv[0][0], str(kv[0][1]))):
        if emitted is not None and (tenant, value, start) not in emitted:
            continue
        if count < d.surge.min_count or first[(tenant, value)] > start - k * size:
            continue
        baseline = sum(counts.get((tenant, value, start - i * size), 0) for i in range(1, k + 1)) / k
        if count > d.surge.factor * baseline:
            alerts.append({"tenant": tenant, "key": output_key(tenant, d.id, value), "window": d.id,
                           "value": value, "window_start": start, "window_end": start + size,
                           "count": count, "baseline": baseline, "factor": d.surge.factor})
    return alerts


def alert_id(tenant: str, key: str, start: int, end: int) -> str:
    """= WindowAggregator.alertId: the first 32 hex digits of SHA-256(tenant\\0key\\0start\\0end)."""
    import hashlib

    return hashlib.sha256(f"{tenant}\0{key}\0{start}\0{end}".encode()).hexdigest()[:32]
