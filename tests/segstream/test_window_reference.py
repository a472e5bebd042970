"""The window math of segstream/window_reference.py (what the window job is compared with), and
the window definitions' validation (segstream/windows.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.events import Event
from segstream import window_reference as ref
from segstream.config import PROJECT_ROOT
from segstream.windows import WindowDef, definitions_json, load_definitions

MIN = 60_000


def wdef(size: int = 5 * MIN, slide: int | None = None, **more) -> WindowDef:
    return WindowDef.model_validate({"id": "w", "event": "page_view", "size_ms": size,
                                     "slide_ms": slide or size, **more})


sizes = st.sampled_from([(5 * MIN, 5 * MIN), (10 * MIN, 5 * MIN), (15 * MIN, 5 * MIN), (60_000, 1_000)])


@given(ts=st.integers(0, 2**45), size_slide=sizes)
def test_an_event_is_in_size_over_slide_aligned_windows(ts, size_slide):
    size, slide = size_slide
    starts = ref.window_starts(ts, size, slide)
    assert len(starts) == size // slide
    assert all(s % slide == 0 and s <= ts < s + size for s in starts)
    assert starts == sorted(starts)
    # and no other window holds it
    assert not (starts[0] - slide <= ts < starts[0] - slide + size) and not (starts[-1] + slide <= ts)


def events_at(stamps: list[int], tenant: str = "t") -> list[Event]:
    return [Event(event_id=f"e{i}", user_id=f"u{i % 7}", ts=ts, name="page_view",
                  values={"path": "/a" if i % 2 else "/z", "ms": i}, tenant=tenant) for i, ts in enumerate(stamps)]


@given(st.lists(st.integers(0, 10 * 5 * MIN), max_size=60), sizes)
def test_aggregates_count_every_event_once_per_window_it_is_in(stamps, size_slide):
    size, slide = size_slide
    d = wdef(size, slide, sum="ms", values={"field": "path", "allow": ["/a"]})
    aggs = ref.aggregates([d], events_at(stamps))
    assert sum(a.count for a in aggs.values()) == len(stamps) * (size // slide)
    assert {k[2] for k in aggs} <= {"/a", "(other)"}
    for (_, _, value, start), a in aggs.items():
        inside = [e for e in events_at(stamps) if start <= e.ts < start + size
                  and (e.values["path"] == "/a") == (value == "/a")]
        record = a.record(d, "t", value, start)
        assert record["count"] == len(inside)
        assert record["sum"] == sum(e.values["ms"] for e in inside)
        assert record["distinct_users"] == len({e.user_id for e in inside})


def surge_def(factor=3.0, k=3, min_count=5) -> WindowDef:
    return wdef(surge={"factor": factor, "baseline_windows": k, "min_count": min_count})


def test_surge_needs_a_full_history_a_factor_and_a_minimum():
    d = surge_def()
    w = 5 * MIN
    # a key's first windows have no history: no alert, however big
    assert ref.surges(d, {("t", None, 0): 100}) == []
    # windows 0..2 then a burst at 3: baseline (2 + 0 + 1) / 3 = 1, 10 > 3
    counts = {("t", None, 0): 2, ("t", None, 2 * w): 1, ("t", None, 3 * w): 10}
    [alert] = ref.surges(d, counts)
    assert (alert["window_start"], alert["count"], alert["baseline"]) == (3 * w, 10, 1.0)
    # under the minimum count: none; exactly factor x baseline: none
    assert ref.surges(surge_def(min_count=11), counts) == []
    assert ref.surges(surge_def(factor=10.0), counts) == []


@given(st.dictionaries(st.integers(0, 40), st.integers(1, 50), min_size=1), st.integers(1, 6),
       st.floats(1.0, 6.0), st.integers(1, 30))
def test_surges_match_the_definition(windows, k, factor, min_count):
    w = 5 * MIN
    d = surge_def(factor, k, min_count)
    counts = {("t", None, i * w): c for i, c in windows.items()}
    alerts = {a["window_start"] // w for a in ref.surges(d, counts)}
    first = min(windows)
    for i, c in windows.items():
        baseline = sum(windows.get(i - j, 0) for j in range(1, k + 1)) / k
        assert (i in alerts) == (c >= min_count and first <= i - k and c > factor * baseline)


def test_alert_ids_are_deterministic_and_differ_by_window():
    a = ref.alert_id("t", "t/page_views", 0, 300_000)
    assert a == ref.alert_id("t", "t/page_views", 0, 300_000) and len(a) == 32
    assert a != ref.alert_id("t", "t/page_views", 300_000, 600_000)


def test_the_shipped_definitions_load_and_serialise():
    defs = load_definitions(PROJECT_ROOT / "conf" / "windows.yaml")
    assert {d.id for d in defs} >= {"page_views", "page_views_by_path"}
    assert '"size_ms": 300000' in definitions_json(defs)
    assert any(d.hopping for d in defs)


@pytest.mark.parametrize("bad", [
    {"id": "w", "event": "e", "size": "5m", "slide": "2m"},       # size not a multiple of the slide
    {"id": "w", "event": "e", "size": "5m", "slide": "10m"},
    {"id": "w", "event": "e", "size": "5m", "surge": {"factor": 0, "baseline_windows": 2, "min_count": 1}},
    {"id": "w w", "event": "e", "size": "5m"},
    {"id": "w", "event": "e", "size": "5m", "values": {"field": "path", "allow": []}},
])
def test_bad_definitions_are_refused(bad):
    with pytest.raises(ValueError):
        WindowDef.model_validate(bad)
