import itertools
from collections import Counter

import msgspec

from operators.events import InvalidEvent, parse_record
from segstream.produce import Record, TrafficSpec, generate, read_jsonl


def test_same_seed_same_traffic():
    spec = TrafficSpec(events=2_000, users=100, seed=7)
    assert list(generate(spec)) == list(generate(spec))
    assert list(generate(spec)) != list(generate(TrafficSpec(events=2_000, users=100, seed=8)))


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
    """A wall-clock timestamp on a week-old backlog would drag the job's watermark to today."""
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
