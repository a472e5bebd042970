"""Aggregations one by one: value semantics against the reference, the exactness of the `changed`
flag, and the edge cases of sessions, windows and distinct."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.msgpack import Ext

from operators.catalogue import StatSpec
from operators.events import Event
from operators.stats import EXACT_DISTINCT_LIMIT, Windowed, aggregation, same_value
from segstream import reference

SPECS = [
    StatSpec.model_validate(spec)
    for spec in [
        {"name": "count", "agg": "count"},
        {"name": "sum", "agg": "sum", "field": "x"},
        {"name": "avg", "agg": "avg", "field": "x"},
        {"name": "min", "agg": "min", "field": "x"},
        {"name": "max", "agg": "max", "field": "x"},
        {"name": "first", "agg": "first", "field": "x"},
        {"name": "last", "agg": "last", "field": "x"},
        {"name": "distinct", "agg": "distinct", "field": "x"},
        {"name": "first_seen", "agg": "first_seen"},
        {"name": "last_seen", "agg": "last_seen"},
        {"name": "sessions", "agg": "sessions", "gap": "10ms"},
        {"name": "count_w", "agg": "count", "window": "30ms", "resolution": "10ms"},
        {"name": "sum_w", "agg": "sum", "field": "x", "window": "30ms", "resolution": "10ms"},
        {"name": "avg_w", "agg": "avg", "field": "x", "window": "20ms", "resolution": "5ms"},
        {"name": "min_w", "agg": "min", "field": "x", "window": "30ms", "resolution": "10ms"},
        {"name": "max_w", "agg": "max", "field": "x", "window": "40ms", "resolution": "10ms"},
        {"name": "distinct_w", "agg": "distinct", "field": "x", "window": "30ms", "resolution": "10ms"},
    ]
]

values = st.one_of(
    st.integers(-2, 2),
    st.integers(-8, 8).map(lambda i: i / 4),
    st.sampled_from([-0.0, True, False, None, "a", "b", "1", 2**63, float("nan")]),
)
# Timestamps as a walk of small steps back and forth: events land near each other, in and out of
# order, across session gaps and window buckets.
steps = st.lists(st.tuples(st.integers(-12, 15), values), max_size=30).map(
    lambda moves: [(1_000 + sum(step for step, _ in moves[: i + 1]), x) for i, (_, x) in enumerate(moves)]
)


def feed(spec: StatSpec, steps: list[tuple[int, object]]):
    """Drive one aggregation like the evaluator does; yield (events so far, state, changed flag, value before)."""
    agg = aggregation(spec)
    state, max_ts, events = agg.initial(), None, []
    for ts, x in steps:
        before = copy.deepcopy(state[0])
        changed = False
        slides = isinstance(agg, Windowed) and max_ts is not None and ts > max_ts
        if slides and ts // agg.resolution != max_ts // agg.resolution:
            changed = agg.advance(state, ts)
        max_ts = ts if max_ts is None else max(max_ts, ts)
        changed = agg.update(state, {"x": x}, ts, max_ts) or changed
        events.append(Event(event_id="e", user_id="u", ts=ts, name="n", values={"x": x}))
        yield events, state, changed, before


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
@settings(max_examples=150, deadline=None)
@given(steps=steps)
def test_every_aggregation_matches_the_reference_and_flags_every_change(spec, steps):
    for events, state, changed, before in feed(spec, steps):
        expected = reference.stat_value(spec, events)
        assert (type(state[0]), repr(state[0])) == (type(expected), repr(expected))
        if not same_value(before, state[0]):
            assert changed, "value changed but update said it did not: cached rule results would go stale"


def values_of(spec: dict, steps: list[tuple[int, object]]) -> list:
    return [state[0] for _, state, _, _ in feed(StatSpec.model_validate(spec), steps)]


def test_bool_strings_null_and_huge_ints_are_not_numbers():
    spec = {"name": "s", "agg": "sum", "field": "x"}
    assert values_of(spec, [(0, True), (1, "5"), (2, None), (3, 2**63), (4, 2)]) == [0, 0, 0, 0, 2]


def test_sum_becomes_a_double_with_the_first_double_and_past_64_bits():
    spec = {"name": "s", "agg": "sum", "field": "x"}
    assert values_of(spec, [(0, 1), (1, 0.5)]) == [1, 1.5]
    got = values_of(spec, [(0, 2**63 - 1), (1, 1)])
    assert got[-1] == 2.0**63 and type(got[-1]) is float


def test_no_input_values():
    assert {spec.name: aggregation(spec).initial()[0] for spec in SPECS} == {
        "count": 0, "sum": 0, "avg": None, "min": None, "max": None, "first": None, "last": None,
        "distinct": 0, "first_seen": None, "last_seen": None, "sessions": 0,
        "count_w": 0, "sum_w": 0, "avg_w": None, "min_w": None, "max_w": None, "distinct_w": 0,
    }  # fmt: skip


def test_min_and_max_ties_prefer_the_int_and_order_zeros():
    minimum = {"name": "m", "agg": "min", "field": "x"}
    maximum = {"name": "m", "agg": "max", "field": "x"}
    assert repr(values_of(minimum, [(0, 1.0), (1, 1)])[-1]) == "1"
    assert repr(values_of(maximum, [(0, 1.0), (1, 1)])[-1]) == "1"
    assert repr(values_of(minimum, [(0, 0.0), (1, -0.0)])[-1]) == "-0.0"
    assert repr(values_of(maximum, [(0, -0.0), (1, 0.0)])[-1]) == "0.0"


def test_first_and_last_follow_processing_order_and_skip_null():
    first = {"name": "f", "agg": "first", "field": "x"}
    last = {"name": "l", "agg": "last", "field": "x"}
    steps = [(5, None), (3, "a"), (1, True), (9, None)]
    assert values_of(first, steps) == [None, "a", "a", "a"]
    assert values_of(last, steps) == [None, "a", True, True]


GAP = {"name": "s", "agg": "sessions", "gap": "10ms"}


@pytest.mark.parametrize(
    ("timestamps", "sessions"),
    [
        ([100], [1]),
        ([100, 110], [1, 1]),  # exactly the gap later: same session
        ([100, 111], [1, 2]),  # more than the gap: new session
        ([100, 50, 200], [1, 1, 2]),  # older than everything seen: never a new session
        ([100, 105, 112, 123], [1, 1, 1, 2]),  # the gap counts from the greatest ts so far
        ([100, 200, 150, 165], [1, 2, 2, 2]),  # late events inside an old gap start nothing
        ([100, 100], [1, 1]),
    ],
)
def test_sessions(timestamps, sessions):
    assert values_of(GAP, [(ts, None) for ts in timestamps]) == sessions


COUNT_30MS = {"name": "c", "agg": "count", "window": "30ms", "resolution": "10ms"}


@pytest.mark.parametrize(
    ("timestamps", "counts"),
    [
        ([0, 9, 10, 29], [1, 2, 3, 4]),  # buckets 0..2 all in
        ([0, 30], [1, 1]),  # bucket 3: window is buckets 1..3, bucket 0 dropped
        ([0, 29, 39], [1, 2, 2]),  # ts 39 is bucket 3: bucket 0 drops
        ([50, 30, 29], [1, 2, 2]),  # 30 is bucket 3 (in 3..5); 29 is bucket 2: late, ignored
        ([50, 5, 60], [1, 1, 2]),  # 5 is far too late; 60 (bucket 6) keeps bucket 5
        ([0, 100], [1, 1]),
    ],
)
def test_window_buckets_and_late_events(timestamps, counts):
    assert values_of(COUNT_30MS, [(ts, 1) for ts in timestamps]) == counts


def test_window_memory_stays_within_its_buckets():
    agg = aggregation(StatSpec.model_validate(COUNT_30MS))
    state = agg.initial()
    for ts in range(0, 10_000, 7):
        agg.advance(state, ts)
        agg.update(state, {}, ts, ts)
        assert len(state[1]) <= 3


DISTINCT = {"name": "d", "agg": "distinct", "field": "x"}


def test_distinct_identity_of_values():
    assert values_of(DISTINCT, [(0, 1), (0, 1.0), (0, True), (0, "1"), (0, -0.0), (0, 0), (0, None)])[-1] == 4


def test_distinct_is_exact_up_to_the_limit_then_an_hll():
    values = values_of(DISTINCT, [(0, f"v{i}") for i in range(EXACT_DISTINCT_LIMIT + 1)])
    assert values == list(range(1, EXACT_DISTINCT_LIMIT + 2))
    agg = aggregation(StatSpec.model_validate(DISTINCT))
    state = agg.initial()
    for i in range(EXACT_DISTINCT_LIMIT + 1):
        agg.update(state, {"x": i}, 0, 0)
    assert isinstance(state[1], Ext)


@pytest.mark.parametrize("n", [1_000, 20_000])
def test_distinct_above_the_limit_is_within_the_documented_bound(n):
    agg = aggregation(StatSpec.model_validate(DISTINCT))
    state = agg.initial()
    for i in range(n):
        agg.update(state, {"x": f"user-{i}"}, 0, 0)
        agg.update(state, {"x": f"user-{i // 2}"}, 0, 0)  # repeats do not count
    assert abs(state[0] - n) <= 0.05 * n


def test_windowed_distinct_unions_buckets_above_the_limit():
    spec = StatSpec.model_validate({"name": "d", "agg": "distinct", "field": "x", "window": "3s", "resolution": "1s"})
    agg = aggregation(spec)
    state = agg.initial()
    # bucket b (second b) sees values b*700 .. b*700+999: neighbours share 300
    for bucket in range(3):
        for x in range(bucket * 700, bucket * 700 + 1_000):
            agg.update(state, {"x": x}, bucket * 1_000, bucket * 1_000)
    assert abs(state[0] - 2_400) <= 0.05 * 2_400
    agg.advance(state, 3_000)  # bucket 0 leaves the window: 700 .. 2399 remain
    assert abs(state[0] - 1_700) <= 0.05 * 1_700
