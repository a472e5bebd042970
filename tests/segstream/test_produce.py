import itertools
import time
from collections import Counter
from dataclasses import replace

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.events import InvalidEvent, parse_record
from segstream.produce import (
    DAY_MS,
    MAX_SPAN_MS,
    Record,
    TrafficSpec,
    default_span_ms,
    generate,
    live,
    read_jsonl,
    timeline_span_ms,
)

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
RETENTION_MS = 90 * DAY_MS  # bigtable.retention_days

specs = st.builds(
    TrafficSpec,
    events=st.integers(0, 1_500),
    users=st.integers(1, 200),
    seed=st.integers(-(2**31), 2**31),
    invalid_ratio=st.sampled_from([0.0, 0.01, 0.3]),
    tenants=st.integers(1, 3),
    out_of_order_ratio=st.sampled_from([0.0, 0.02, 0.5, 1.0]),
    max_disorder_ms=st.integers(1, 60_000),
    now=st.integers(10**12, 4 * 10**12),
    span_ms=st.none() | st.integers(1_000, 200 * DAY_MS),
)


def test_same_seed_same_traffic():
    spec = TrafficSpec(events=2_000, users=100, seed=7, now=NOW)
    assert list(generate(spec)) == list(generate(spec))
    assert list(generate(spec)) != list(generate(replace(spec, seed=8)))


@settings(max_examples=25, deadline=None)
@given(specs)
def test_deterministic_for_a_seed_and_a_fixed_now(spec):
    assert list(generate(spec)) == list(generate(spec))


@settings(max_examples=60, deadline=None)
@given(specs)
def test_a_history_ends_at_now_and_nothing_is_later(spec):
    """Bound: no timestamp is later than `now`, by any margin (the generator's only jitter, the
    out-of-order share, moves events earlier, by up to max_disorder_ms). The last event in stream
    order is at `now` unless it is out of order; the first at now - span, likewise."""
    records = list(generate(spec))
    assert len(records) == spec.events
    if not records:
        return
    stamps = [r.timestamp for r in records]
    span = timeline_span_ms(spec)
    assert max(stamps) <= spec.now
    assert spec.now - spec.max_disorder_ms <= stamps[-1] <= spec.now
    assert spec.now - span - spec.max_disorder_ms <= stamps[0] <= spec.now - span
    assert min(stamps) >= spec.now - span - spec.max_disorder_ms
    # In stream order, each record is at most max_disorder_ms earlier than one before it.
    assert all(ts >= top - spec.max_disorder_ms
               for ts, top in zip(stamps, itertools.accumulate(stamps, max), strict=True))


@settings(max_examples=20, deadline=None)
@given(specs, st.integers(-RETENTION_MS, RETENTION_MS))
def test_moving_now_moves_every_timestamp_and_nothing_else(spec, shift):
    moved = replace(spec, now=spec.now + shift)
    for a, b in zip(generate(spec), generate(moved), strict=True):
        assert b.timestamp == a.timestamp + shift and b.key == a.key
        if not a.key.startswith(b"invalid-"):
            ea, eb = msgspec.json.decode(a.value), msgspec.json.decode(b.value)
            assert eb == {**ea, "ts": ea["ts"] + shift}


def test_the_default_now_is_the_wall_clock_when_generation_starts():
    before = int(time.time() * 1000)
    records = list(generate(TrafficSpec(events=3_000, users=100)))
    after = int(time.time() * 1000)
    assert before - 5_000 <= max(r.timestamp for r in records) <= after


def test_a_million_events_lie_inside_the_retention():
    """The whole history of 1,000,000 events (the records themselves, not an estimate) ends at now
    and starts less than the 90-day Bigtable retention earlier."""
    spec = TrafficSpec(events=1_000_000, users=5_000, seed=3, now=NOW)
    low = high = NOW
    count = 0
    for r in generate(spec):
        low, high, count = min(low, r.timestamp), max(high, r.timestamp), count + 1
    assert count == 1_000_000 and high == NOW
    assert NOW - low <= MAX_SPAN_MS + spec.max_disorder_ms < RETENTION_MS
    assert NOW - low > 50 * DAY_MS  # dense, not squeezed: about default_span_ms


def test_the_span_follows_the_event_count_up_to_its_cap():
    for events in (2_000, 20_000, 200_000):
        span = timeline_span_ms(TrafficSpec(events=events, users=500, seed=1))
        assert 0.9 * default_span_ms(events) <= span <= 1.1 * default_span_ms(events), events
    assert default_span_ms(10_000_000) == MAX_SPAN_MS


def test_live_traffic_is_stamped_at_about_the_wall_clock_and_never_ahead_of_it():
    """A fake clock that only moves when live() sleeps: every record is released once the clock
    reaches its timestamp (0 to max_disorder_ms after it), at about the asked rate throughout."""
    clock = [NOW / 1000]

    def sleep(seconds):
        clock[0] += seconds

    spec = TrafficSpec(events=20_000, users=500, seed=9, now=NOW)
    released = [(r.timestamp, clock[0] * 1000) for r in live(spec, rate=1_000, clock=lambda: clock[0], sleep=sleep)]
    assert len(released) == 20_000
    lags = [at - ts for ts, at in released]
    assert min(lags) >= 0 and max(lags) <= spec.max_disorder_ms
    assert min(ts for ts, _ in released) >= NOW - spec.max_disorder_ms
    per_second = Counter(int(at - NOW) // 1000 for _, at in released)
    assert 18 <= len(per_second) <= 22
    assert all(800 <= per_second[s] <= 1_200 for s in range(19)), per_second  # steady from the start
    # Deterministic for a seed and a start, like a history.
    clock[0] = NOW / 1000
    assert [r.timestamp for r in live(spec, rate=1_000, clock=lambda: clock[0], sleep=sleep)] == [
        ts for ts, _ in released]


def test_exact_count_with_invalid_share_and_skew():
    spec = TrafficSpec(events=20_000, users=500, seed=1, invalid_ratio=0.01, tenants=2)
    records = list(generate(spec))
    assert len(records) == 20_000
    valid, invalid = [], 0
    for r in records:
        try:
            valid.append(parse_record(r.value))
        except InvalidEvent:
            invalid += 1
    assert 100 < invalid < 300
    per_user = Counter((e.tenant, e.user_id) for e in valid)
    top = per_user.most_common(1)[0][1]
    assert top > 20 * (len(valid) / len(per_user))  # a few very hot users
    assert {e.tenant for e in valid} == {"default", "tenant-1"}
    assert {e.name for e in valid} >= {"page_view", "purchase", "identify", "add_to_cart"}
    assert len({e.event_id for e in valid}) == len(valid)


def test_records_are_keyed_and_timestamped_by_user_and_event_time():
    for r in itertools.islice(generate(TrafficSpec(events=500, users=50, invalid_ratio=0)), 500):
        event = parse_record(r.value)
        assert r.key == event.user_id.encode() and r.timestamp == event.ts


def test_invalid_records_are_timestamped_in_the_simulated_time_too():
    """A wall-clock timestamp on a days-long backlog would drag the job's watermark to its end."""
    records = list(generate(TrafficSpec(events=2_000, users=50, invalid_ratio=0.05)))
    valid_ts = [parse_record(r.value).ts for r in records if not r.key.startswith(b"invalid-")]
    invalid_ts = [r.timestamp for r in records if r.key.startswith(b"invalid-")]
    assert invalid_ts and all(min(valid_ts) <= ts <= max(valid_ts) for ts in invalid_ts)


def test_some_events_arrive_out_of_order_per_user():
    latest: dict[str, int] = {}
    late = 0
    for r in generate(TrafficSpec(events=5_000, users=100, invalid_ratio=0)):
        event = parse_record(r.value)
        if event.ts < latest.get(event.user_id, 0):
            late += 1
            assert latest[event.user_id] - event.ts <= 20_000 + 5_000
        latest[event.user_id] = max(latest.get(event.user_id, 0), event.ts)
    assert late > 0


def test_replay_jsonl(tmp_path):
    path = tmp_path / "events.jsonl"
    good = {"event_id": "a", "user_id": "u1", "ts": 5, "name": "x"}
    path.write_bytes(msgspec.json.encode(good) + b"\n\n{broken\n")
    assert list(read_jsonl(path)) == [Record(b"u1", msgspec.json.encode(good), 5), Record(None, b"{broken", None)]
