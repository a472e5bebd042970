"""The one call the Flink job makes per event: (user state blob, event) -> (new blob, evaluation).

The blob (msgpack) holds everything the user needs: stat states, the greatest ts seen, the segments
and failing rules of the previous evaluation. Rules are re-run only when something they read may
have changed (a stat, or `event`); the others keep their previous result, which is exact because a
CEL rule is a pure function of what it reads. Semantics: docs/semantics.md.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from operator import itemgetter
from typing import Any, NamedTuple

import msgspec

from operators.catalogue import Catalogue
from operators.events import Event
from operators.rules import RuleSet, TenantRules
from operators.stats import INT64_MAX, INT64_MIN, Windowed, aggregation

FORMAT_VERSION = 1


class UserState(msgspec.Struct, array_like=True):
    """One user's keyed state (positional msgpack array: no field names in the blob)."""

    version: int
    seq: int  # events processed
    max_ts: int | None  # greatest event ts seen
    stat_fps: bytes  # 32-bit fingerprint of each stored stat's spec, parallel to `stats`
    stats: list[list[Any]]  # per-stat state (operators/stats.py); item 0 is the value
    segments: list[str]  # sorted ids of the rules matched at the previous event
    # The same as a mask of the tenant's rules (rules.py TenantRules), and the rules that failed;
    # both only meaningful while the tenant's rule set still has fingerprint `rules_fp`.
    segment_mask: int
    error_mask: int
    rules_fp: int
    # The user expired (Evaluator.expire) and only `seq` is kept. A trailing field with a default:
    # blobs written before it existed still decode, so FORMAT_VERSION stays 1.
    expired: bool = False
    # De-duplication (catalogue dedup_events): the user's last events, oldest first, as
    # (event_id, greatest ts when it was processed, its evaluation as JSON: the receipt a retry gets).
    # Trailing with a default, as `expired`: blobs written before it decode with none remembered.
    recent: list[tuple[str, int, bytes]] = msgspec.field(default_factory=list)


class Processed(NamedTuple):
    blob: bytes
    evaluation: dict
    # The user's previous life expired before this event, and no timer had reported it yet.
    expiry: dict | None
    # When to check the user for expiry (event time, ms), if that moved; None: nothing to register.
    timer: int | None
    # The event's event_id was seen recently (catalogue dedup_events): nothing changed (`blob` is the
    # state given), and `evaluation` is the first one's, as it was then (docs/semantics.md, "Retries").
    duplicate: bool = False


# Expiry timers are rounded up to 1/64 of `expire_after`, so that a busy user registers a new
# timer only every so often; an expiry is reported at most that much late, never early.
TIMER_SLOTS = 64


def _pack_fps(fps: list[int]) -> bytes:
    return struct.pack(f">{len(fps)}I", *fps)


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(UserState).decode
_encode_json = msgspec.json.Encoder().encode
_decode_json = msgspec.json.Decoder().decode
_value = itemgetter(0)


class Evaluator:
    def __init__(self, catalogue: Catalogue, rules: RuleSet) -> None:
        if rules.catalogue.names != catalogue.names:
            raise ValueError("the rule set was validated against a different catalogue")
        self.rules = rules
        self.expire_after = catalogue.expire_after
        self.dedup_events = catalogue.dedup_events
        self.dedup_horizon = catalogue.dedup_horizon
        self._timer_resolution = max(1, (catalogue.expire_after or 0) // TIMER_SLOTS)
        self._names = catalogue.names
        self._aggs = [aggregation(spec) for spec in catalogue.stats]
        self._fps = [spec.fingerprint for spec in catalogue.stats]
        self._packed_fps = _pack_fps(self._fps)
        # Updates to run for every event, and for each event name; filtering by name here means an
        # event only touches the stats that count it.
        always: list[tuple[int, Callable[..., bool]]] = []
        by_event: dict[str, list[tuple[int, Callable[..., bool]]]] = {}
        for i, (spec, agg) in enumerate(zip(catalogue.stats, self._aggs, strict=True)):
            if spec.event is None:
                always.append((i, agg.update))
            else:
                by_event.setdefault(spec.event, []).append((i, agg.update))
        self._always = tuple(always)
        self._by_event = {name: tuple(updates) for name, updates in by_event.items()}
        # Windowed stats grouped by resolution: all of a group slide when its bucket of max_ts moves.
        windows: dict[int, list] = {}
        for i, agg in enumerate(self._aggs):
            if isinstance(agg, Windowed):
                windows.setdefault(agg.resolution, []).append((i, agg.advance))
        self._windows = tuple((resolution, tuple(advances)) for resolution, advances in windows.items())

    def process(self, blob: bytes | None, event: Event, extra: dict | None = None) -> Processed:
        """`extra`: fields appended to the evaluation (the job's `rules_version`), kept in its receipt."""
        ts = event.ts
        if not INT64_MIN <= ts <= INT64_MAX:
            raise ValueError(f"event ts {ts} is outside the 64-bit range")
        expiry = None
        if blob is None:
            fresh = [agg.initial() for agg in self._aggs]
            user = UserState(FORMAT_VERSION, 0, None, self._packed_fps, fresh, [], 0, 0, 0)
            migrated = False
        else:
            user = _decode(blob)
            if user.version != FORMAT_VERSION:
                raise ValueError(f"user state format {user.version} is not {FORMAT_VERSION}")
            if self.dedup_events is None:
                user.recent = []  # de-duplication turned off: forget what an earlier run remembered
            elif user.recent:
                # A retry: before anything else, so that it changes nothing (not even an expiry).
                # The bounds are applied first, so that lowered ones hold at once.
                self._prune(user)
                for event_id, _, receipt in user.recent:
                    if event_id == event.event_id:
                        return Processed(blob, _decode_json(receipt), None, None, True)
            if self.expire_after is not None and (
                    user.expired or (user.max_ts is not None and ts > user.max_ts + self.expire_after)):
                if not user.expired:  # no timer got there first: report it now
                    expiry = self._expiry(user, event.tenant, event.user_id)
                _forget(user, expired=False)
            migrated = user.stat_fps != self._packed_fps
            if migrated:
                self._migrate(user)
        deadline_before = self._timer(user.max_ts)
        states = user.stats
        changed: list[int] = []  # indexes of stats whose value may have changed
        previous_max = user.max_ts
        if previous_max is None or ts > previous_max:
            if previous_max is not None:
                for resolution, advances in self._windows:
                    if ts // resolution != previous_max // resolution:
                        for i, advance in advances:
                            if advance(states[i], ts):
                                changed.append(i)
            user.max_ts = previous_max = ts
        values = event.values
        for i, update in self._always:
            if update(states[i], values, ts, previous_max):
                changed.append(i)
        for i, update in self._by_event.get(event.name, ()):
            if update(states[i], values, ts, previous_max):
                changed.append(i)
        user.seq += 1
        stats = dict(zip(self._names, map(_value, states), strict=True))
        segments, entered, exited = self._evaluate_rules(user, event, stats, changed, migrated)
        deadline = self._timer(user.max_ts)
        evaluation = {
            "event_id": event.event_id,
            "tenant": event.tenant,
            "user_id": event.user_id,
            "ts": ts,
            "seq": user.seq,
            "stats": stats,
            "segments": segments,
            "entered": entered,
            "exited": exited,
        }
        if extra:
            evaluation.update(extra)
        if self.dedup_events is not None:
            self._remember(user, event.event_id, _encode_json(evaluation))
        return Processed(_encode(user), evaluation, expiry, deadline if deadline != deadline_before else None)

    def _remember(self, user: UserState, event_id: str, receipt: bytes) -> None:
        """Keep this event's receipt; forget the oldest beyond `dedup_events` or the horizon."""
        assert user.max_ts is not None  # an event was just processed
        user.recent.append((event_id, user.max_ts, receipt))
        self._prune(user)

    def _prune(self, user: UserState) -> None:
        assert user.max_ts is not None and self.dedup_events is not None  # only remembered after an event
        recent = user.recent
        drop = max(0, len(recent) - self.dedup_events)
        horizon = self.dedup_horizon
        if horizon is not None:
            # Stamps never decrease (each is the greatest ts so far), so the stale ones come first.
            while drop < len(recent) and user.max_ts - recent[drop][1] > horizon:
                drop += 1
        if drop:
            del recent[:drop]

    def expire(self, blob: bytes, now: int, tenant: str, user_id: str) -> tuple[bytes, dict] | None:
        """An expiry timer at event time `now`: if the user is due, (tombstone blob, expiry record)."""
        if self.expire_after is None:
            return None
        user = _decode(blob)
        if user.expired or user.max_ts is None or user.max_ts + self.expire_after > now:
            return None  # a newer event moved the deadline (its own timer is registered)
        expiry = self._expiry(user, tenant, user_id)
        _forget(user, expired=True)
        return _encode(user), expiry

    def _timer(self, max_ts: int | None) -> int | None:
        if self.expire_after is None or max_ts is None:
            return None
        resolution = self._timer_resolution
        return -(-(max_ts + self.expire_after) // resolution) * resolution

    def _expiry(self, user: UserState, tenant: str, user_id: str) -> dict:
        assert user.max_ts is not None and self.expire_after is not None  # both callers checked
        return {
            "tenant": tenant,
            "user_id": user_id,
            "seq": user.seq,  # of the user's last evaluation before the expiry
            "last_ts": user.max_ts,
            "expired_at": user.max_ts + self.expire_after,
            "exited": user.segments,
        }

    def _migrate(self, user: UserState) -> None:
        """Re-key a blob written under another catalogue: keep unchanged stats, start the rest empty."""
        stored = dict(zip(struct.unpack(f">{len(user.stat_fps) // 4}I", user.stat_fps), user.stats, strict=True))
        user.stats = [stored.get(fp) or agg.initial() for fp, agg in zip(self._fps, self._aggs, strict=True)]
        user.stat_fps = self._packed_fps

    def _evaluate_rules(
        self, user: UserState, event: Event, stats: dict[str, object], changed: list[int], migrated: bool
    ) -> tuple[list[str], list[str], list[str]]:
        """Update the user's segments and masks; return (segments, entered, exited)."""
        rules: TenantRules = self.rules.for_tenant(event.tenant)
        guarded_here = rules.guarded.get(event.name, 0)
        known_false = rules.guarded_mask & ~guarded_here  # guarded on another event name
        reuse = not migrated and user.rules_fp == rules.fingerprint
        if reuse:
            run = rules.event_mask | guarded_here
            for i in changed:
                run |= rules.stat_masks[i]
            run &= ~known_false
            keep = ~(run | known_false)
            previous, previous_errors = user.segment_mask, user.error_mask
        else:
            run = rules.all_mask & ~known_false
            keep = previous = previous_errors = 0
        matched, errors = rules.evaluate(run, stats, event) if run else (0, 0)
        matched |= previous & keep
        errors |= previous_errors & keep
        self.rules.error_count += errors.bit_count()
        user.segment_mask, user.error_mask, user.rules_fp = matched, errors, rules.fingerprint
        if reuse:
            if matched == previous:
                return user.segments, [], []
            user.segments = rules.ids_of(matched)
            return user.segments, rules.ids_of(matched & ~previous), rules.ids_of(previous & ~matched)
        # The rule set changed (or this is the user's first event): compare ids, some may be gone.
        before, before_set = user.segments, set(user.segments)
        user.segments = segments = rules.ids_of(matched)
        now = set(segments)
        return segments, [i for i in segments if i not in before_set], [i for i in before if i not in now]


def _forget(user: UserState, expired: bool) -> None:
    """Keep only `seq` (it keeps counting across lives); the next event starts every stat afresh
    (an empty fingerprint list makes it migrate) and enters its segments anew."""
    user.max_ts, user.stat_fps, user.stats, user.segments = None, b"", [], []
    user.segment_mask = user.error_mask = user.rules_fp = 0
    user.expired = expired
    user.recent = []  # an expired user remembers no event_ids: a retry after that is a new event
