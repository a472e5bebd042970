"""Incremental aggregations: one small class per `agg` (semantics: docs/semantics.md).

A stat's state is a short list whose item 0 is the stat's current value, so the evaluator reads every
value with one C-level map and updates mutate the list in place (each user's blob is decoded afresh
per event, so nothing is shared). `update(state, values, ts, max_ts)` returns whether the value may
have changed: the evaluator re-runs only the rules whose inputs changed, so a False must be exact.
`max_ts` is the user's greatest event ts with the current event included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from hashlib import blake2b
from math import copysign
from typing import Any

from datasketches import hll_sketch, hll_union, tgt_hll_type
from msgspec.msgpack import Ext

from operators.catalogue import StatSpec

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Distinct keeps exact keys up to this many values, then switches to an HLL sketch.
EXACT_DISTINCT_LIMIT = 64
# lg_k 12: relative standard error 1.3% (single sketch) to 1.6% (window unions); docs/semantics.md.
HLL_LG_K = 12
HLL_TYPE = tgt_hll_type.HLL_4  # half the bytes of HLL_8 for the same accuracy and speed
# Sketches are stored in their updatable form: up to 8x faster to load than the compact one
# (which rebuilds its hash set) for at most ~2.2 KB either way.
HLL_EXT = 1  # msgpack extension type of a serialized sketch in the state blob
DIGEST_BYTES = 8


def number(value: object) -> int | float | None:
    """The value if it is a number a CEL rule can hold: bool is not a number, nor is an int outside 64 bits."""
    kind = type(value)
    if kind is float:
        return value if value == value else None  # type: ignore[return-value]  # NaN orders nothing
    if kind is int and INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
        return value  # type: ignore[return-value]
    return None


def scalar(value: object) -> int | float | str | bool | None:
    """The value if it counts as input for first/last/distinct (null counts as missing)."""
    kind = type(value)
    if kind is str or kind is bool:
        return value  # type: ignore[return-value]
    return number(value)


def fit_int(total: int | float) -> int | float:
    """Integer totals stay ints while CEL (64-bit) can hold them, then become doubles."""
    if type(total) is int and not INT64_MIN <= total <= INT64_MAX:
        return float(total)
    return total


def same_value(a: object, b: object) -> bool:
    """Indistinguishable to a CEL rule: same type, equal, and for doubles the same sign of zero."""
    if type(a) is not type(b) or a != b:
        return False
    return type(a) is not float or copysign(1.0, a) == copysign(1.0, b)  # type: ignore[arg-type]


def wins_min_tie(new: int | float, old: int | float) -> bool:
    """Between numerically equal values min keeps an int over a double and -0.0 over 0.0 (order-independent)."""
    if type(new) is not type(old):
        return type(new) is int
    return type(new) is float and copysign(1.0, new) < copysign(1.0, old)


def wins_max_tie(new: int | float, old: int | float) -> bool:
    """Between numerically equal values max keeps an int over a double and 0.0 over -0.0."""
    if type(new) is not type(old):
        return type(new) is int
    return type(new) is float and copysign(1.0, new) > copysign(1.0, old)


def distinct_digest(value: object) -> bytes | None:
    """8-byte digest of a value's identity for distinct: 1 and 1.0 are one number; true and "1" are neither.
    Digests keep the exact set small whatever the values' length; two of 64 values collide with
    probability below 1e-16."""
    kind = type(value)
    if kind is str:
        key = "s" + value  # type: ignore[operator]
    elif kind is bool:
        key = "t" if value else "f"
    else:
        value = number(value)
        if value is None:
            return None
        if type(value) is float and value.is_integer() and INT64_MIN <= value <= INT64_MAX:
            value = int(value)
        key = "n" + repr(value)
    return blake2b(key.encode("utf-8", "surrogatepass"), digest_size=DIGEST_BYTES).digest()


def add_key(container: bytes | Ext, digest: bytes) -> tuple[bytes | Ext, int]:
    """Add a digest to an exact container (concatenated digests) or an HLL sketch (msgpack extension
    HLL_EXT) -> (container, its distinct count)."""
    if type(container) is bytes:
        if _holds(container, digest):
            return container, len(container) // DIGEST_BYTES
        if len(container) < EXACT_DISTINCT_LIMIT * DIGEST_BYTES:
            container += digest
            return container, len(container) // DIGEST_BYTES
        sketch = _sketch_of(container)
    else:
        sketch = hll_sketch.deserialize(container.data)  # type: ignore[union-attr]  # not bytes: an Ext
    sketch.update(int.from_bytes(digest, "big", signed=True))
    return Ext(HLL_EXT, sketch.serialize_updatable()), round(sketch.get_estimate())


def union_count(containers: Iterable[bytes | Ext]) -> int:
    """Distinct count over several containers: exact while all are exact, else an HLL union estimate."""
    containers = list(containers)
    if all(type(c) is bytes for c in containers):
        # "Q": 8-byte digests
        return len(set().union(*(memoryview(c).cast("Q") for c in containers)))  # type: ignore[arg-type]
    union = hll_union(HLL_LG_K)
    for container in containers:
        union.update(_sketch_of(container) if type(container) is bytes
                     else hll_sketch.deserialize(container.data))  # type: ignore[union-attr]  # not bytes: an Ext
    return round(union.get_estimate())


def _holds(container: bytes, digest: bytes) -> bool:
    at = container.find(digest)
    while at > 0 and at % DIGEST_BYTES:  # a match straddling two digests: look further
        at = container.find(digest, at + 1)
    return at >= 0


def _sketch_of(container: bytes) -> hll_sketch:
    sketch = hll_sketch(HLL_LG_K, HLL_TYPE)
    for i in range(0, len(container), DIGEST_BYTES):
        sketch.update(int.from_bytes(container[i : i + DIGEST_BYTES], "big", signed=True))
    return sketch


class Aggregation:
    """One stat's incremental aggregation; subclasses define initial() and update()."""

    def __init__(self, spec: StatSpec) -> None:
        self.field = spec.field

    def initial(self) -> list:
        raise NotImplementedError

    def update(self, state: list, values: dict, ts: int, max_ts: int) -> bool:
        raise NotImplementedError


class Count(Aggregation):
    def initial(self) -> list:
        return [0]

    def update(self, state: list, values: dict, ts: int, max_ts: int) -> bool:
        state[0] += 1
        return True


class Sum(Aggregation):
    def initial(self) -> list:
        return [0]

    def update(self, state: list, values: dict, ts: int, max_ts: int) -> bool:
        x = number(values.get(self.field))
        if x is None:
            return False
        old = state[0]
        state[0] = new = fit_int(old + x)
        return not same_value(old, new)


class Avg(Aggregation):
    """State [avg, sum, count]."""

    def initial(self) -> list:
        return [None, 0, 0]

    def update(self, state: list, values: dict, ts: int, max_ts: int) -> bool:
        x = number(values.get(self.field))
        if x is None:
            return False
        old = state[0]
        total = state[1] = fit_int(state[1] + x)
        count = state[2] = state[2] + 1
        state[0] = new = total / count
        return not same_value(old, new)


class Min(Aggregation):
    def initial(self) -> list:
        return [None]

    def update(self, state: list, values: dict, ts: int, max_ts: int) -> bool:
        x = number(values.get(self.field))
        if x is None:
            return False
        old = state[0]
        if old is None or x < old or (x == old and wins_min_tie(x, old)):
            state[0] = x
            return True
        return False


class Max(Aggregation):
    def initial(self) -> list:
        return [None]

    def update(self, state: list, values: dict, ts: int, max_ts: int) -> bool:
        x = number(values.get(self.field))
        if x is None:
            return False
        old = state[0]
        if old is None or x > old or (x == old and wins_max_tie(x, old)):
            state[0] = x
            return True
        return False


class First(Aggregation):
    def initial(self) -> list:
        return [None]

    def update(self, state: list, values: dict, ts: int, max_ts: int) -> bool:
        if state[0] is not None:
            return False
        x = scalar(values.get(self.field))
        if x is None:
            return False
        state[0] = x
        return True


class Last(Aggregation):
    def initial(self) -> list:
        return [None]

    def update(self, state: list, values: dict, ts: int, max_ts: int) -> bool:
        x = scalar(values.get(self.field))
        if x is None:
            return False
        old = state[0]
        state[0] = x
        return not same_value(old, x)


class FirstSeen(Aggregation):
    def initial(self) -> list:
        return [None]

    def update(self, state: list, values: dict, ts: int, max_ts: int) -> bool:
        if state[0] is None or ts < state[0]:
            state[0] = ts
            return True
        return False


class LastSeen(Aggregation):
    def initial(self) -> list:
        return [None]

    def update(self, state: list, values: dict, ts: int, max_ts: int) -> bool:
        if state[0] is None or ts > state[0]:
            state[0] = ts
            return True
        return False


class Sessions(Aggregation):
    """State [sessions, greatest ts of the events this stat counts]."""

    def __init__(self, spec: StatSpec) -> None:
        super().__init__(spec)
        self.gap = spec.gap

    def initial(self) -> list:
        return [0, None]

    def update(self, state: list, values: dict, ts: int, max_ts: int) -> bool:
        greatest = state[1]
        if greatest is None or ts > greatest + self.gap:
            state[0] += 1
            state[1] = ts
            return True
        if ts > greatest:
            state[1] = ts  # extends the current session: the value stays
        return False


class Distinct(Aggregation):
    """State [count, container]: the digests of the values seen, or an HLL sketch once over the limit."""

    def initial(self) -> list:
        return [0, b""]

    def update(self, state: list, values: dict, ts: int, max_ts: int) -> bool:
        digest = distinct_digest(values.get(self.field))
        if digest is None:
            return False
        old = state[0]
        state[1], state[0] = add_key(state[1], digest)
        return state[0] != old


class Windowed(Aggregation):
    """Sliding window of whole buckets; state [value, {bucket: partial}].

    Invariant after every event: only buckets in [B - N + 1, B] are kept, B = max_ts // resolution.
    `advance` (called whenever B moves) drops the ones that fell out; a later event whose bucket is
    already below the window is ignored.
    """

    def __init__(self, spec: StatSpec) -> None:
        super().__init__(spec)
        window, resolution = spec.window, spec.resolution
        assert window is not None and resolution is not None  # StatSpec gives every window a resolution
        self.resolution = resolution
        self.buckets = window // resolution

    def advance(self, state: list, max_ts: int) -> bool:
        raise NotImplementedError

    def _stale(self, partials: dict, max_ts: int) -> list[int]:
        low = max_ts // self.resolution - self.buckets + 1
        return [bucket for bucket in partials if bucket < low]


class WindowCount(Windowed):
    """Counts are exact ints: the total follows each change instead of being re-added."""

    def initial(self) -> list:
        return [0, {}]

    def update(self, state: list, values: dict, ts: int, max_ts: int) -> bool:
        bucket = ts // self.resolution
        if bucket <= max_ts // self.resolution - self.buckets:
            return False  # late: older than the window
        partials = state[1]
        partials[bucket] = partials.get(bucket, 0) + 1
        state[0] += 1
        return True

    def advance(self, state: list, max_ts: int) -> bool:
        stale = self._stale(state[1], max_ts)
        for bucket in stale:
            state[0] -= state[1].pop(bucket)
        return bool(stale)


class Window(Windowed):
    """sum, avg, min, max, distinct: the value is recomputed from the partials when they change
    (re-adding doubles in another order than subtracting would drift)."""

    def __init__(self, spec: StatSpec) -> None:
        super().__init__(spec)
        self.read, self.fold, self.total, self.empty = _WINDOW_PARTS[spec.agg]

    def initial(self) -> list:
        return [self.empty, {}]

    def update(self, state: list, values: dict, ts: int, max_ts: int) -> bool:
        x = self.read(values.get(self.field))
        if x is None:
            return False
        bucket = ts // self.resolution
        if bucket <= max_ts // self.resolution - self.buckets:
            return False  # late: older than the window
        partials = state[1]
        partials[bucket] = self.fold(partials.get(bucket), x)
        return self._refresh(state)

    def advance(self, state: list, max_ts: int) -> bool:
        stale = self._stale(state[1], max_ts)
        if not stale:
            return False
        for bucket in stale:
            del state[1][bucket]
        return self._refresh(state)

    def _refresh(self, state: list) -> bool:
        old = state[0]
        state[0] = new = self.total(state[1].values())
        return not same_value(old, new)


def _fold_sum(partial: int | float | None, x: int | float) -> int | float:
    return x if partial is None else fit_int(partial + x)


def _total_sum(partials: Iterable[int | float]) -> int | float:
    return fit_int(sum(partials))


def _fold_distinct(partial: bytes | Ext | None, digest: bytes) -> bytes | Ext:
    return add_key(b"" if partial is None else partial, digest)[0]


def _fold_avg(partial: list | None, x: int | float) -> list:
    if partial is None:
        return [x, 1]
    partial[0] = fit_int(partial[0] + x)
    partial[1] += 1
    return partial


def _total_avg(partials: Iterable[list]) -> float | None:
    partials = list(partials)
    count = sum(p[1] for p in partials)
    return fit_int(sum(p[0] for p in partials)) / count if count else None


def _fold_min(partial: int | float | None, x: int | float) -> int | float:
    if partial is None or x < partial or (x == partial and wins_min_tie(x, partial)):
        return x
    return partial


def _fold_max(partial: int | float | None, x: int | float) -> int | float:
    if partial is None or x > partial or (x == partial and wins_max_tie(x, partial)):
        return x
    return partial


def _total_min(partials: Iterable) -> int | float | None:
    best = None
    for x in partials:
        best = _fold_min(best, x)
    return best


def _total_max(partials: Iterable) -> int | float | None:
    best = None
    for x in partials:
        best = _fold_max(best, x)
    return best


# agg -> (read the event's input, fold it into a bucket's partial, total the partials, value when empty)
_WINDOW_PARTS: dict[str, tuple[Callable[[object], Any], Callable[[Any, Any], Any], Callable[[Iterable[Any]], Any],
                               int | None]] = {
    "sum": (number, _fold_sum, _total_sum, 0),
    "avg": (number, _fold_avg, _total_avg, None),
    "min": (number, _fold_min, _total_min, None),
    "max": (number, _fold_max, _total_max, None),
    "distinct": (distinct_digest, _fold_distinct, union_count, 0),
}

_UNWINDOWED = {
    "count": Count,
    "sum": Sum,
    "avg": Avg,
    "min": Min,
    "max": Max,
    "first": First,
    "last": Last,
    "distinct": Distinct,
    "first_seen": FirstSeen,
    "last_seen": LastSeen,
    "sessions": Sessions,
}

def aggregation(spec: StatSpec) -> Aggregation:
    """The incremental aggregation for one catalogue entry."""
    if spec.window is None:
        return _UNWINDOWED[spec.agg](spec)
    return WindowCount(spec) if spec.agg == "count" else Window(spec)
