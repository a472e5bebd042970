"""User expiry (docs/semantics.md, "Expiry"): a property test of Evaluator.process and
Evaluator.expire against a model written from the spec, and the state blob's compatibility."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.catalogue import CatalogueError, parse_catalogue
from operators.evaluator import TIMER_SLOTS, Evaluator
from operators.events import Event
from operators.rules import RuleSet, compile_rule
from segstream import reference

TTL = 1_000
CATALOGUE = parse_catalogue({
    "expire_after": "1s",
    "stats": [
        {"name": "n", "agg": "count"},
        {"name": "sum_x", "agg": "sum", "field": "x"},
        {"name": "first_x", "agg": "first", "field": "x"},
        {"name": "distinct_x", "agg": "distinct", "field": "x"},
        {"name": "sessions", "agg": "sessions", "gap": "300ms"},
        {"name": "n_b_2s", "agg": "count", "event": "b", "window": "2s", "resolution": "500ms"},
    ],
})
RULES = {
    "twice": {"id": "twice", "description": "", "when": "n >= 2"},
    "big": {"id": "big", "description": "", "when": "sum_x > 10"},
    "b_recently": {"id": "b_recently", "description": "", "when": "n_b_2s >= 1"},
}
USERS = ("u1", "u2")

operations = st.lists(
    st.one_of(
        # an event: the clock moves by max(step, 0); a negative step makes it that much out of order
        st.tuples(st.just("event"), st.sampled_from(USERS), st.integers(-300, 1_600), st.sampled_from("ab"),
                  st.integers(0, 9)),
        # a timer firing for a user at clock + offset (any time: the engine decides if it is due)
        st.tuples(st.just("timer"), st.sampled_from(USERS), st.integers(-500, 2_500)),
    ),
    max_size=60,
)


@dataclass
class Model:
    """One user per the spec: lives, the expiry reported once per life, seq counting across lives."""

    life: list[Event] = field(default_factory=list)
    greatest: int | None = None
    expired: bool = False
    seq: int = 0
    segments: list[str] = field(default_factory=list)
    timers: set[int] = field(default_factory=set)  # registered (the job keeps them until they fire)

    def expiry(self, user: str) -> dict:
        return {"tenant": "t", "user_id": user, "seq": self.seq, "last_ts": self.greatest,
                "expired_at": self.greatest + TTL, "exited": self.segments}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_expiry_matches_the_spec(ops):
    evaluator = Evaluator(CATALOGUE, RuleSet(CATALOGUE, [compile_rule(r, CATALOGUE) for r in RULES.values()]))
    blobs: dict[str, bytes | None] = dict.fromkeys(USERS)
    models = {user: Model() for user in USERS}
    clock = 10_000
    for op in ops:
        user, model = op[1], models[op[1]]
        if op[0] == "timer":
            now = clock + op[2]
            if blobs[user] is None:
                continue  # the job only has timers for users it has seen
            due = not model.expired and model.greatest + TTL <= now
            result = evaluator.expire(blobs[user], now, "t", user)
            assert (result is not None) == due
            if due:
                blobs[user], record = result
                assert record == model.expiry(user)
                model.expired = True
            continue
        _, _, step, name, x = op
        clock += max(step, 0)
        ts = clock + min(step, 0)
        event = Event(event_id=f"{user}-{model.seq}", user_id=user, ts=ts, name=name, values={"x": x}, tenant="t")
        new_life = model.greatest is not None and (model.expired or ts > model.greatest + TTL)
        expected_expiry = model.expiry(user) if new_life and not model.expired else None
        if new_life:
            model.life, model.greatest, model.expired, model.segments = [], None, False, []

        blobs[user], evaluation, expiry, timer, _ = evaluator.process(blobs[user], event)

        model.life.append(event)
        model.greatest = ts if model.greatest is None else max(model.greatest, ts)
        model.seq += 1
        stats = reference.stat_values(CATALOGUE.stats, model.life)
        segments, _ = reference.evaluate_rules(RULES, stats, event)
        assert expiry == expected_expiry
        assert evaluation["seq"] == model.seq
        assert evaluation["stats"] == stats
        assert evaluation["segments"] == segments
        assert evaluation["entered"] == sorted(set(segments) - set(model.segments))
        assert evaluation["exited"] == sorted(set(model.segments) - set(segments))
        model.segments = segments
        # A timer is always registered at the current deadline or less than one slot after it.
        if timer is not None:
            model.timers.add(timer)
        deadline = model.greatest + TTL
        assert any(deadline <= t < deadline + TTL // TIMER_SLOTS for t in model.timers)


def test_a_timer_for_an_old_deadline_does_nothing_after_a_newer_event():
    evaluator = Evaluator(CATALOGUE, RuleSet(CATALOGUE))
    blob, _, _, first_timer, _ = evaluator.process(None, Event("e1", "u", 1_000, "a", {"x": 1}, "t"))
    blob, _, _, second_timer, _ = evaluator.process(blob, Event("e2", "u", 1_500, "a", {"x": 1}, "t"))
    assert first_timer < second_timer
    assert evaluator.expire(blob, first_timer, "t", "u") is None
    blob, record = evaluator.expire(blob, second_timer, "t", "u")
    assert (record["seq"], record["last_ts"], record["expired_at"]) == (2, 1_500, 2_500)
    assert evaluator.expire(blob, second_timer + 10_000, "t", "u") is None, "reported once"
    assert len(blob) < 20, "an expired user keeps only a tombstone"
    _, evaluation, expiry, _, _ = evaluator.process(blob, Event("e3", "u", 9_000, "a", {"x": 5}, "t"))
    assert expiry is None and evaluation["seq"] == 3 and evaluation["stats"]["n"] == 1


def test_without_expire_after_nothing_expires_and_no_timer_is_asked_for():
    catalogue = parse_catalogue({"stats": [{"name": "n", "agg": "count"}]})
    evaluator = Evaluator(catalogue, RuleSet(catalogue))
    blob, _, expiry, timer, _ = evaluator.process(None, Event("e1", "u", 0, "a", {}, "t"))
    blob, evaluation, expiry, timer, _ = evaluator.process(blob, Event("e2", "u", 10**12, "a", {}, "t"))
    assert (expiry, timer, evaluation["stats"]["n"]) == (None, None, 2)
    assert evaluator.expire(blob, 10**15, "t", "u") is None


def test_a_blob_written_before_expiry_existed_still_reads():
    evaluator = Evaluator(CATALOGUE, RuleSet(CATALOGUE))
    blob, *_ = evaluator.process(None, Event("e1", "u", 1_000, "a", {"x": 1}, "t"))
    old_layout = msgspec.msgpack.encode(msgspec.msgpack.decode(blob)[:-2])  # without the trailing `expired`, `recent`
    _, evaluation, _, _, _ = evaluator.process(old_layout, Event("e2", "u", 1_100, "a", {"x": 2}, "t"))
    assert (evaluation["seq"], evaluation["stats"]["sum_x"]) == (2, 3)


def test_expire_after_is_a_duration():
    assert parse_catalogue({"expire_after": "30d", "stats": []}).expire_after == 30 * 86_400_000
    with pytest.raises(CatalogueError, match="expire_after"):
        parse_catalogue({"expire_after": "soon", "stats": []})
