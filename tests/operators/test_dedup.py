"""De-duplication by event_id (docs/semantics.md, "Retries"): a retried event changes nothing and is
answered with the first one's receipt, as long as the user still remembers its event_id."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.catalogue import MAX_DEDUP_EVENTS, CatalogueError, parse_catalogue
from operators.evaluator import Evaluator
from operators.events import Event
from operators.rules import RuleSet, compile_rule

N = 4
HORIZON = 10_000
STATS = [
    {"name": "n", "agg": "count"},
    {"name": "sum_x", "agg": "sum", "field": "x"},
    {"name": "last_x", "agg": "last", "field": "x"},
    {"name": "x_10s", "agg": "sum", "field": "x", "window": "10s", "resolution": "1s"},
    {"name": "sessions", "agg": "sessions", "gap": "5s"},
]
RULES = [{"id": "big", "description": "d", "when": "sum_x > 10"}]


def evaluator_for(**dedup: object) -> Evaluator:
    catalogue = parse_catalogue({"stats": STATS, **dedup})
    return Evaluator(catalogue, RuleSet(catalogue, [compile_rule(r, catalogue) for r in RULES]))


DEDUP = {"dedup_events": N, "dedup_horizon": f"{HORIZON}ms"}


def remembered(history: list[tuple[str, int]]) -> list[str]:
    """The event_ids a user remembers after `history` ((event_id, greatest ts then), in order): the
    last N whose greatest ts is within HORIZON of the newest one's. The spec, written out."""
    newest = history[-1][1]
    return [event_id for event_id, stamp in history[-N:] if newest - stamp <= HORIZON]


@st.composite
def streams_with_retries(draw) -> tuple[list[Event], list[Event]]:
    """A stream of distinct events for three users, and the same stream with retries of events the
    user still remembers inserted (same event_id, other content: the first one wins)."""
    ts = 0
    clean: list[Event] = []
    retried: list[Event] = []
    history: dict[str, list[tuple[str, int]]] = {}
    greatest: dict[str, int] = {}
    for i in range(draw(st.integers(1, 60))):
        user = draw(st.sampled_from(["u1", "u2", "u3"]))
        ts = max(0, ts + draw(st.integers(-4_000, 6_000)))
        event = Event(f"e{i}", user, ts, draw(st.sampled_from(["a", "b"])), {"x": draw(st.integers(-5, 9))}, "t")
        clean.append(event)
        retried.append(event)
        greatest[user] = max(greatest.get(user, ts), ts)
        history.setdefault(user, []).append((event.event_id, greatest[user]))
        for _ in range(draw(st.integers(0, 2))):
            target = draw(st.sampled_from(sorted(history)))
            event_id = draw(st.sampled_from(remembered(history[target])))
            retried.append(Event(event_id, target, draw(st.integers(0, 10**6)), "retry", {"x": 100}, "t"))
    return clean, retried


@settings(max_examples=80, deadline=None)
@given(streams_with_retries())
def test_retries_within_the_horizon_change_nothing_and_get_the_first_receipt(streams):
    clean, retried = streams
    evaluator = evaluator_for(**DEDUP)
    blobs: dict[str, bytes | None] = {}
    first: dict[str, dict] = {}
    for event in clean:
        result = evaluator.process(blobs.get(event.user_id), event, {"rules_version": 7})
        assert not result.duplicate
        blobs[event.user_id] = result.blob
        first[event.event_id] = result.evaluation
    expected_errors = evaluator.rules.error_count

    again = evaluator_for(**DEDUP)
    states: dict[str, bytes | None] = {}
    duplicates = 0
    for event in retried:
        result = again.process(states.get(event.user_id), event, {"rules_version": 7})
        if result.duplicate:
            duplicates += 1
            assert result.blob == states[event.user_id], "a duplicate leaves the state as it was"
            assert (result.expiry, result.timer) == (None, None)
        else:
            states[event.user_id] = result.blob
        assert result.evaluation == first[event.event_id]
    assert duplicates == len(retried) - len(clean)
    assert states == blobs, "the same final state as without the retries"
    assert again.rules.error_count == expected_errors, "a duplicate runs no rule"


def test_a_retry_gets_the_receipt_as_it_was_then():
    evaluator = evaluator_for(**DEDUP)
    blob, first, *_ = evaluator.process(None, Event("e1", "u", 1_000, "a", {"x": 20}, "t"), {"rules_version": 1})
    blob, second, *_ = evaluator.process(blob, Event("e2", "u", 2_000, "a", {"x": 1}, "t"), {"rules_version": 2})
    retry = evaluator.process(blob, Event("e1", "u", 2_500, "a", {"x": 99}, "t"), {"rules_version": 3})
    assert retry.duplicate and retry.evaluation == first
    assert (first["seq"], first["stats"]["sum_x"], first["entered"], first["rules_version"]) == (1, 20, ["big"], 1)
    assert second["seq"] == 2 and second["stats"]["sum_x"] == 21


def test_an_event_id_is_forgotten_after_n_newer_events_or_beyond_the_horizon():
    evaluator = evaluator_for(**DEDUP)
    blob = None
    for i in range(N + 1):
        blob, *_ = evaluator.process(blob, Event(f"e{i}", "u", i, "a", {"x": 1}, "t"))
    again = evaluator.process(blob, Event("e0", "u", N + 1, "a", {"x": 1}, "t"))
    assert not again.duplicate and again.evaluation["seq"] == N + 2, "N newer events: e0 is forgotten"
    assert evaluator.process(again.blob, Event("e2", "u", 0, "a", {}, "t")).duplicate  # the last N: e2 e3 e4 e0

    blob, *_ = evaluator.process(None, Event("a", "v", 1_000, "a", {}, "t"))
    blob, *_ = evaluator.process(blob, Event("b", "v", 1_000 + HORIZON, "a", {}, "t"))
    assert evaluator.process(blob, Event("a", "v", 0, "a", {}, "t")).duplicate, "exactly the horizon: remembered"
    blob, *_ = evaluator.process(blob, Event("c", "v", 1_001 + HORIZON, "a", {}, "t"))
    assert not evaluator.process(blob, Event("a", "v", 0, "a", {}, "t")).duplicate, "beyond it: forgotten"
    assert evaluator.process(blob, Event("b", "v", 0, "a", {}, "t")).duplicate


def test_a_late_event_is_remembered_by_the_greatest_ts_when_it_came():
    evaluator = evaluator_for(**DEDUP)
    blob, *_ = evaluator.process(None, Event("new", "u", 100_000, "a", {}, "t"))
    blob, *_ = evaluator.process(blob, Event("late", "u", 0, "a", {}, "t"))  # 100 s behind: still kept
    assert evaluator.process(blob, Event("late", "u", 0, "a", {}, "t")).duplicate


def test_without_dedup_events_a_repeated_event_id_is_a_new_event():
    evaluator = evaluator_for()
    blob, *_ = evaluator.process(None, Event("e1", "u", 1, "a", {"x": 1}, "t"))
    again = evaluator.process(blob, Event("e1", "u", 1, "a", {"x": 1}, "t"))
    assert not again.duplicate and again.evaluation["seq"] == 2
    assert msgspec.msgpack.decode(again.blob)[-1] == [], "nothing remembered"


def test_lowered_bounds_hold_at_once_and_turned_off_nothing_is_remembered():
    blob = None
    for i in range(N):
        blob, *_ = evaluator_for(**DEDUP).process(blob, Event(f"e{i}", "u", i, "a", {}, "t"))
    assert evaluator_for(**DEDUP).process(blob, Event("e0", "u", 0, "a", {}, "t")).duplicate
    assert not evaluator_for(dedup_events=2).process(blob, Event("e1", "u", 0, "a", {}, "t")).duplicate
    assert evaluator_for(dedup_events=2).process(blob, Event("e2", "u", 0, "a", {}, "t")).duplicate
    off = evaluator_for().process(blob, Event("e3", "u", 0, "a", {}, "t"))
    assert not off.duplicate and off.evaluation["seq"] == N + 1
    assert msgspec.msgpack.decode(off.blob)[-1] == []


def test_an_expired_user_remembers_no_event_id():
    catalogue = parse_catalogue({"stats": STATS, "expire_after": "1m", **DEDUP})
    evaluator = Evaluator(catalogue, RuleSet(catalogue))
    blob, _, _, timer, _ = evaluator.process(None, Event("e1", "u", 1_000, "a", {"x": 1}, "t"))
    assert evaluator.process(blob, Event("e1", "u", 1_000_000, "a", {}, "t")).duplicate, "before the timer: a retry"
    blob, _ = evaluator.expire(blob, timer, "t", "u")
    after = evaluator.process(blob, Event("e1", "u", 1_000, "a", {"x": 1}, "t"))
    assert not after.duplicate and after.evaluation["seq"] == 2 and after.evaluation["stats"]["n"] == 1


def test_a_blob_written_before_dedup_existed_still_reads():
    evaluator = evaluator_for(**DEDUP)
    blob, *_ = evaluator.process(None, Event("e1", "u", 1_000, "a", {"x": 1}, "t"))
    decoded = msgspec.msgpack.decode(blob)
    assert len(decoded) == 11 and decoded[-1][0][0] == "e1"
    old_layout = msgspec.msgpack.encode(decoded[:-1])  # the current release's 10 fields
    result = evaluator.process(old_layout, Event("e1", "u", 1_100, "a", {"x": 2}, "t"))
    assert not result.duplicate and (result.evaluation["seq"], result.evaluation["stats"]["sum_x"]) == (2, 3)
    assert evaluator.process(result.blob, Event("e1", "u", 1_200, "a", {}, "t")).duplicate


def test_dedup_settings_are_checked():
    catalogue = parse_catalogue({"stats": [], "dedup_events": 16, "dedup_horizon": "1h"})
    assert (catalogue.dedup_events, catalogue.dedup_horizon) == (16, 3_600_000)
    assert parse_catalogue({"stats": []}).dedup_events is None
    for bad, reason in [({"dedup_events": 0}, "greater than or equal to 1"),
                        ({"dedup_events": MAX_DEDUP_EVENTS + 1}, "less than or equal to 1000"),
                        ({"dedup_events": "16"}, "valid integer"), ({"dedup_events": True}, "valid integer"),
                        ({"dedup_events": 4, "dedup_horizon": "soon"}, "bad duration"),
                        ({"dedup_horizon": "1h"}, "dedup_horizon needs dedup_events")]:
        with pytest.raises(CatalogueError, match=reason):
            parse_catalogue({"stats": [], **bad})
