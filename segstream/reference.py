"""A deliberately simple reference: every stat recomputed from scratch from a user's whole event list,
and rules evaluated through cel with every stat in the context, written from docs/semantics.md
without looking at how operators/ does it incrementally. The property tests (tests/operators/)
compare the two, and the end-to-end checks of segstream/testing.py (check_results) recompute the
job's outputs with it.
"""

from __future__ import annotations

from math import copysign
from typing import TypeGuard

import cel

from operators.catalogue import StatSpec
from operators.events import Event

INT64 = range(-(2**63), 2**63)


def is_number(value: object) -> TypeGuard[int | float]:
    if type(value) is int:
        return value in INT64
    return type(value) is float and value == value


def is_scalar(value: object) -> bool:
    return type(value) in (str, bool) or is_number(value)


def add(total: int | float, x: int | float) -> int | float:
    total += x
    return float(total) if type(total) is int and total not in INT64 else total


def min_key(x: int | float) -> tuple:
    # numeric order; on a tie an int beats a double, and -0.0 beats 0.0
    return (x, type(x) is float, copysign(1.0, x) if type(x) is float else 0.0)


def max_key(x: int | float) -> tuple:
    # numeric order; on a tie an int beats a double, and 0.0 beats -0.0
    return (x, type(x) is int, copysign(1.0, x) if type(x) is float else 0.0)


def distinct_identity(value: object) -> tuple:
    # numbers are one set whatever their type (1 == 1.0); bools and strings are apart
    kind = "bool" if type(value) is bool else "str" if type(value) is str else "number"
    return (kind, value)


def stat_value(spec: StatSpec, events: list[Event]) -> object:
    """The value of one stat after `events` (in processing order)."""
    greatest_ts = max(e.ts for e in events) if events else None
    counted = [e for e in events if spec.event is None or e.name == spec.event]
    if spec.window is not None and counted:
        resolution = spec.resolution
        # events is not empty; StatSpec gives every window a resolution
        assert greatest_ts is not None and resolution is not None
        top = greatest_ts // resolution
        lowest = top - spec.window // resolution + 1
        counted = [e for e in counted if lowest <= e.ts // resolution <= top]
    field_values = [e.values.get(spec.field) for e in counted] if spec.field else []
    numbers = [x for x in field_values if is_number(x)]
    scalars = [x for x in field_values if is_scalar(x)]
    match spec.agg:
        case "count":
            return len(counted)
        case "sum":
            total: int | float = 0
            for x in numbers:
                total = add(total, x)
            return total
        case "avg":
            total = 0
            for x in numbers:
                total = add(total, x)
            return total / len(numbers) if numbers else None
        case "min":
            return min(numbers, key=min_key) if numbers else None
        case "max":
            return max(numbers, key=max_key) if numbers else None
        case "first":
            return scalars[0] if scalars else None
        case "last":
            return scalars[-1] if scalars else None
        case "distinct":
            return len({distinct_identity(x) for x in scalars})
        case "first_seen":
            return min((e.ts for e in counted), default=None)
        case "last_seen":
            return max((e.ts for e in counted), default=None)
        case "sessions":
            gap = spec.gap
            assert gap is not None  # StatSpec gives every sessions stat a gap
            sessions, greatest = 0, None
            for e in counted:
                if greatest is None or e.ts > greatest + gap:
                    sessions += 1
                if greatest is None or e.ts > greatest:
                    greatest = e.ts
            return sessions
    raise AssertionError(spec.agg)


def stat_values(specs: list[StatSpec], events: list[Event]) -> dict[str, object]:
    return {spec.name: stat_value(spec, events) for spec in specs}


def evaluate_rules(rules: dict[str, dict], stats: dict[str, object], event: Event) -> tuple[list[str], int]:
    """(sorted ids of the tenant's rules that match, number of rules whose evaluation failed)."""
    context = dict(stats, event={"name": event.name, "values": event.values, "ts": event.ts})
    matched, errors = [], 0
    for rule_id, rule in rules.items():
        if rule.get("tenant") not in (None, event.tenant):
            continue
        try:
            result = cel.compile(rule["when"]).execute(context)
        except Exception:
            errors += 1
            continue
        if result is True:
            matched.append(rule_id)
        elif result is not False:
            errors += 1
    return sorted(matched), errors


def lives(events: list[Event], expire_after: int | None) -> list[list[Event]]:
    """A user's events (processing order) split into lives: a new life starts with an event more than
    `expire_after` after the greatest ts before it (timers only change when an expiry is reported)."""
    result: list[list[Event]] = [[]]
    greatest = None
    for e in events:
        if expire_after is not None and greatest is not None and e.ts > greatest + expire_after:
            result.append([])
            greatest = None
        result[-1].append(e)
        greatest = e.ts if greatest is None else max(greatest, e.ts)
    return result
