"""The stat catalogue (conf/stats.yaml): which per-user statistics segstream keeps.

Validated once at load with pydantic; the hot path (operators/stats.py) only reads the resulting
plain attributes. Semantics of every aggregation are in docs/semantics.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

MS_PER_UNIT = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")

DEFAULT_GAP_MS = 30 * MS_PER_UNIT["m"]
# Windows up to a day default to minute buckets, longer ones to hour buckets.
FINE_RESOLUTION_MS = MS_PER_UNIT["m"]
COARSE_RESOLUTION_MS = MS_PER_UNIT["h"]
# Bounds the per-user memory of one windowed stat (one bucket per resolution step).
MAX_BUCKETS = 10_000
# Bounds the receipts a user's state keeps for de-duplication (docs/semantics.md, "Retries").
MAX_DEDUP_EVENTS = 1_000

Agg = Literal[
    "count", "sum", "avg", "min", "max", "first", "last", "distinct", "first_seen", "last_seen", "sessions"
]
NUMERIC_AGGS = frozenset({"sum", "avg", "min", "max"})
FIELD_AGGS = NUMERIC_AGGS | {"first", "last", "distinct"}
WINDOWED_AGGS = frozenset({"count", "sum", "avg", "min", "max", "distinct"})

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# CEL reserved words cannot name a variable; `event` is the current event in rules.
_RESERVED = frozenset(
    "true false null in as break const continue else for function if import let loop package "
    "namespace return var void while event".split()
)


class CatalogueError(ValueError):
    """A catalogue that cannot be used; the message says which stat and why."""


def parse_duration(text: str) -> int:
    """'500ms' | '90s' | '30m' | '1h' | '1d' -> milliseconds (a positive int)."""
    if not isinstance(text, str):
        raise ValueError(f"duration must be a string such as '30m', got {text!r}")
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"bad duration {text!r}: expected a whole number and a unit ms, s, m, h or d (e.g. '30m')")
    ms = int(match[1]) * MS_PER_UNIT[match[2]]
    if ms == 0:
        raise ValueError(f"duration {text!r} must be greater than zero")
    return ms


def format_duration(ms: int) -> str:
    """The largest unit that divides ms evenly, for error messages and docs."""
    for unit in ("d", "h", "m", "s"):
        if ms % MS_PER_UNIT[unit] == 0:
            return f"{ms // MS_PER_UNIT[unit]}{unit}"
    return f"{ms}ms"


class StatSpec(BaseModel):
    """One stat. Durations are read as text ('30m') and held as milliseconds."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    agg: Agg
    event: str | None = None
    field: str | None = None
    window: int | None = None
    resolution: int | None = None
    gap: int | None = None

    @field_validator("window", "resolution", "gap", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return None if value is None else parse_duration(value)  # type: ignore[arg-type]

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"name {name!r} is not a CEL identifier (letters, digits, _; not starting with a digit)")
        if name in _RESERVED:
            raise ValueError(f"name {name!r} is reserved (a CEL keyword or `event`)")
        return name

    @field_validator("event", "field")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        if value == "":
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StatSpec:
        agg = self.agg
        if agg in FIELD_AGGS and self.field is None:
            raise ValueError(f"agg {agg!r} needs a `field`")
        if agg not in FIELD_AGGS and self.field is not None:
            raise ValueError(f"agg {agg!r} takes no `field`")
        if self.gap is not None and agg != "sessions":
            raise ValueError("`gap` only applies to agg 'sessions'")
        if agg == "sessions" and self.gap is None:
            self.gap = DEFAULT_GAP_MS
        if self.window is None:
            if self.resolution is not None:
                raise ValueError("`resolution` needs a `window`")
            return self
        if agg not in WINDOWED_AGGS:
            raise ValueError(f"agg {agg!r} cannot have a `window` (only {', '.join(sorted(WINDOWED_AGGS))})")
        if self.resolution is None:
            self.resolution = FINE_RESOLUTION_MS if self.window <= MS_PER_UNIT["d"] else COARSE_RESOLUTION_MS
        if self.window % self.resolution:
            raise ValueError(
                f"window {format_duration(self.window)} is not a whole multiple of "
                f"resolution {format_duration(self.resolution)}"
            )
        if self.window // self.resolution > MAX_BUCKETS:
            raise ValueError(
                f"window {format_duration(self.window)} / resolution {format_duration(self.resolution)} is "
                f"{self.window // self.resolution} buckets, over the limit of {MAX_BUCKETS}"
            )
        return self

    @property
    def fingerprint(self) -> int:
        """Stable 32-bit digest of the definition: a stored stat is reused only while this is unchanged."""
        canonical = json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))
        return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=4).digest(), "big")


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    stats: list[StatSpec]
    # A user whose newest event is older than this (event time) expires: their state is reset and
    # the expiry reported on the expirations topic (docs/semantics.md, "Expiry"). None: never.
    expire_after: int | None = None
    # De-duplication by event_id (docs/semantics.md, "Retries"): each user remembers the event_id and
    # the receipt of their last `dedup_events` events, and forgets one once the user's greatest ts
    # has moved more than `dedup_horizon` past the greatest ts when it was processed. None: no
    # de-duplication; no horizon: only the count bounds it.
    dedup_events: int | None = Field(default=None, ge=1, le=MAX_DEDUP_EVENTS)
    dedup_horizon: int | None = None

    @field_validator("expire_after", "dedup_horizon", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return None if value is None else parse_duration(value)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _unique_names(self) -> Catalogue:
        seen: set[str] = set()
        for stat in self.stats:
            if stat.name in seen:
                raise ValueError(f"duplicate stat name {stat.name!r}")
            seen.add(stat.name)
        if self.dedup_horizon is not None and self.dedup_events is None:
            raise ValueError("dedup_horizon needs dedup_events")
        return self

    @property
    def names(self) -> list[str]:
        return [stat.name for stat in self.stats]


def parse_catalogue(data: object) -> Catalogue:
    """Validate a decoded catalogue document ({"stats": [...]}); raise CatalogueError naming the culprit."""
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(_describe(err, data) for err in exc.errors())
        raise CatalogueError(f"invalid stat catalogue:\n{problems}") from None


def load_catalogue(path: str | Path) -> Catalogue:
    with open(path, encoding="utf-8") as file:
        try:
            data = yaml.safe_load(file)
        except yaml.YAMLError as exc:
            raise CatalogueError(f"{path}: not YAML: {exc}") from None
    return parse_catalogue(data)


def _describe(error: ErrorDetails, data: object) -> str:
    """One pydantic error as 'stats[2] (avg_spend).window: bad duration ...'."""
    loc = list(error["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "stats" and isinstance(loc[1], int):
        where = f"stats[{loc[1]}]"
        try:
            where += f" ({data['stats'][loc[1]]['name']})"  # type: ignore[index]
        except (KeyError, TypeError, IndexError):
            pass
        loc = loc[2:]
    else:
        where = ".".join(str(part) for part in loc) or "catalogue"
        loc = []
    # The Literal error on `agg` lists every option; "unknown agg" is what the reader needs.
    if loc[:1] == ["agg"] and error["type"] == "literal_error":
        return f"{where}.agg: unknown agg {error['input']!r} (one of {', '.join(get_args(Agg))})"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}{'.' + '.'.join(map(str, loc)) if loc else ''}: {message}"
