"""Event time you can trust (issue 14, item 3; docs/security.md, docs/events.md).

An event's `ts` is set by its producer: a browser, an app, a server. One record stamped far in the
future used to move its partition's watermark there, and every expiry timer and window behind it
fired at once. So before an event may move event time, its `ts` is judged against the one clock a
replay reproduces: the broker's append time of the record (the events topic is on
`message.timestamp.type=LogAppendTime`, so the record timestamp is the broker's, not the
producer's). An event more than `max_future_skew_ms` ahead of it is a dead letter with the reason
`future_skew_reason` gives; the JVM engine (io.segstream.engine.Events.checkFutureSkew) says the
same, byte for byte.

Far-past timestamps are not refused: a watermark only moves forward, so an old event cannot
move it. Such an event is evaluated as any other (its user's stats take it, docs/semantics.md), it
is a late event for the windows it falls in (late-events, with its lateness) and cannot expire
anyone: its user's expiry timer lies in the past and fires at the next watermark, as for any
user idle for `expire_after`.

Pure Python; the section `events:` of conf/segstream.yaml is `EventsConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

from operators.events import Event, InvalidEvent, parse_record

# One minute. A record at the bound moves its partition's watermark (the bound minus the
# out-of-orderness) ahead of the wall clock: events that arrive in that minute are late for their
# windows (5 minutes by default) and expiry timers fire up to that much early, so the bound is kept
# small against both. It is wide against honest clocks: the front stamps events with its own clock
# (serving/validation.py), NTP-synced servers are milliseconds apart, and the append time is never
# before the send, so queueing and retries only widen the margin. A device clock more than a minute
# fast is refused with the reason rather than trusted.
DEFAULT_MAX_FUTURE_SKEW_MS = 60_000


@dataclass(frozen=True)
class EventsConfig:
    """The `events:` section: how the event contract judges a record's event time."""

    max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS

    def __post_init__(self) -> None:
        if not isinstance(self.max_future_skew_ms, int) or self.max_future_skew_ms < 0:
            raise ValueError("events.max_future_skew_ms must be a non-negative integer")


def future_skew_reason(ts: int, append_time: int, max_future_skew_ms: int) -> str | None:
    """The dead-letter reason of an event stamped `ts` in a record appended at `append_time` (epoch
    ms), or None if `ts` is at most `max_future_skew_ms` after it (= Events.checkFutureSkew)."""
    if ts - append_time <= max_future_skew_ms:
        return None
    return (f"ts is {ts - append_time} ms after the record's append time {append_time}, over the "
            f"{max_future_skew_ms} ms allowed (events.max_future_skew_ms)")


def check_event_time(event: Event, append_time: int | None, max_future_skew_ms: int) -> Event:
    """`event` if its ts is trusted; InvalidEvent with the reason if it is too far in the future.
    `append_time` None (a record without one): nothing to judge against, the event is taken."""
    if append_time is not None:
        reason = future_skew_reason(event.ts, append_time, max_future_skew_ms)
        if reason is not None:
            raise InvalidEvent(reason)
    return event


def parse_appended(raw: bytes | None, append_time: int | None,
                   max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS) -> Event:
    """The whole contract of one events-topic record: parse_record, then its event time against the
    record's append time. What the job's parse-validate does, in the same order (a record that
    breaks both gets parse_record's reason)."""
    return check_event_time(parse_record(raw), append_time, max_future_skew_ms)
