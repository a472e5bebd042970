"""Event time you can trust (operators/event_time.py): a ts more than max_future_skew_ms after the
record's append time is refused with the reason the JVM engine gives too (tests/segstream/
test_differential.py compares them; jvm/engine FutureSkewTest the words)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.event_time import (
    DEFAULT_MAX_FUTURE_SKEW_MS,
    EventsConfig,
    check_event_time,
    future_skew_reason,
    parse_appended,
)
from operators.events import MAX_TS, InvalidEvent, parse_record

APPENDED = 1_765_000_000_000


def record(ts: int) -> bytes:
    return msgspec.json.encode({"event_id": "e", "user_id": "u", "ts": ts, "name": "n"})


@given(st.integers(0, MAX_TS), st.integers(-1, MAX_TS), st.integers(0, 10**12))
def test_refused_exactly_when_ts_is_beyond_the_skew(ts, appended, skew):
    reason = future_skew_reason(ts, appended, skew)
    assert (reason is None) == (ts <= appended + skew)
    try:
        event = parse_appended(record(ts), appended, skew)
    except InvalidEvent as exc:
        assert str(exc) == reason
        assert str(exc) == (f"ts is {ts - appended} ms after the record's append time {appended}, over the "
                            f"{skew} ms allowed (events.max_future_skew_ms)")
    else:
        assert reason is None and event == parse_record(record(ts))


@given(st.integers(0, MAX_TS))
def test_far_past_is_never_refused_and_no_append_time_judges_nothing(ts):
    assert parse_appended(record(ts), None, 0).ts == ts
    assert parse_appended(record(0), max(ts, 0), 0).ts == 0


def test_the_bound_is_inclusive():
    assert parse_appended(record(APPENDED + 60_000), APPENDED).ts == APPENDED + 60_000
    with pytest.raises(InvalidEvent, match=r"^ts is 60001 ms after the record's append time 1765000000000, over "
                                           r"the 60000 ms allowed \(events.max_future_skew_ms\)$"):
        parse_appended(record(APPENDED + 60_001), APPENDED)


def test_the_contract_comes_first():
    """A record that breaks the contract too gets the contract's reason (as parse-validate orders them)."""
    with pytest.raises(InvalidEvent, match=r"^ts is after "):
        parse_appended(record(MAX_TS + 1), APPENDED)
    with pytest.raises(InvalidEvent, match=r"^user_id is empty$"):
        parse_appended(msgspec.json.encode({"event_id": "e", "user_id": "", "ts": MAX_TS, "name": "n"}), APPENDED)


def test_check_event_time_returns_the_event():
    event = parse_record(record(5))
    assert check_event_time(event, APPENDED, 0) is event


def test_the_config_section():
    assert EventsConfig().max_future_skew_ms == DEFAULT_MAX_FUTURE_SKEW_MS == 60_000
    for bad in (-1, 1.5, "60000"):
        with pytest.raises(ValueError):
            EventsConfig(max_future_skew_ms=bad)  # type: ignore[arg-type]
