"""Event-time window aggregates and surge alerts: the `windows:` and `alerts:` sections of
conf/segstream.yaml, and the window definitions of conf/windows.yaml (docs/windows.md).

segstream.config.Settings composes `WindowsConfig` as `windows` and `AlertsConfig` as `alerts`
(the way sinks/bigtable/config.py's section is composed), so every key is overridable like the
others (SEGSTREAM_WINDOWS__FILE=conf/windows-v2.yaml, SEGSTREAM_ALERTS__WEBHOOKS='["https://…"]').
`definitions_json` is what the main job (jobs/user_stats.py, with `windows.enabled`) or the
standalone window job (jobs/windows.py) hands to the Java operators
(io.segstream.flink.windows.WindowSpec.parseAll): durations in ms, defaults filled in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from operators.catalogue import parse_duration

if TYPE_CHECKING:
    from segstream.config import Settings

# Values of a dimension that are not in its whitelist are counted under this value.
OTHER = "(other)"


class WindowsConfig(BaseModel):
    """`windows:` in conf/segstream.yaml: where the definitions are and where the windows run."""

    # The window and surge definitions (relative to the project root).
    file: str = "conf/windows.yaml"
    # True: the main job (jobs/user_stats.py) computes the windows, a branch off parse-validate
    # (one read, one parse of each event). False: no windows in the main job; run them, if wanted,
    # as the standalone window job (jobs/windows.py refuses to start while this is true: both would
    # write the same topics with the same transactional ids). docs/windows.md, "Where the windows run".
    enabled: bool = True
    # The rest applies to the standalone window job only (the main job's window branch runs with the
    # main job's parallelism and state backend).
    # The standalone window job's parallelism (None: flink.parallelism).
    parallelism: int | None = None
    # Kafka consumer group suffix of the standalone window job's source (the main job uses `events`).
    group_suffix: str = "windows"
    # The standalone window job's state backend. Its state is small (the open windows and K counts
    # per key), so the heap (`hashmap`: accumulators stay objects, serialized only in checkpoints)
    # is the default; `rocksdb` serializes each accumulator on every event (docs/windows.md).
    state_backend: Literal["rocksdb", "hashmap"] = "hashmap"


class AlertsConfig(BaseModel):
    """`alerts:` in conf/segstream.yaml: the notifier (`segstream alerts notify`, segstream/notifier.py)."""

    # Incoming-webhook URLs (Slack-compatible: each alert is POSTed as JSON with a `text` field).
    webhooks: list[str] = []
    group_id: str = "segstream-alerts-notifier"
    timeout_s: float = 10.0
    # Retries of one POST before the notifier gives up and exits (without committing): at-least-once.
    max_attempts: int = 8
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


class Dimension(BaseModel):
    """Split the counts by a `values` field, capped by a whitelist (page paths are unbounded)."""

    model_config = ConfigDict(extra="forbid")

    field: str
    allow: list[str] = Field(min_length=1)
    other: str = OTHER


class Surge(BaseModel):
    """Alert when a window's count is >= min_count and > factor x the mean count of the
    baseline_windows windows before it (same key; empty windows count 0)."""

    model_config = ConfigDict(extra="forbid")

    factor: float = Field(gt=0)
    baseline_windows: int = Field(ge=1, le=1000)
    min_count: int = Field(ge=1)


class WindowDef(BaseModel):
    """One window definition of conf/windows.yaml."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    event: str = Field(min_length=1)
    tenants: list[str] | None = None
    size_ms: int
    slide_ms: int
    values: Dimension | None = None
    sum: str | None = None
    distinct_users: bool = True
    surge: Surge | None = None

    @model_validator(mode="before")
    @classmethod
    def _durations(cls, data: object) -> object:
        if isinstance(data, dict):
            data = dict(data)
            if "size" in data:
                data["size_ms"] = parse_duration(data.pop("size"))
            if "slide" in data:
                data["slide_ms"] = parse_duration(data.pop("slide"))
            data.setdefault("slide_ms", data.get("size_ms"))
        return data

    @field_validator("slide_ms")
    @classmethod
    def _slide(cls, slide: int, info) -> int:
        size = info.data.get("size_ms")
        if size is None or slide <= 0 or slide > size or size % slide:
            raise ValueError("the size must be a whole multiple of the slide (tumbling: no slide)")
        return slide

    @property
    def hopping(self) -> bool:
        return self.slide_ms != self.size_ms


class WindowsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    windows: list[WindowDef]

    @field_validator("windows")
    @classmethod
    def _unique(cls, windows: list[WindowDef]) -> list[WindowDef]:
        ids = [w.id for w in windows]
        if len(ids) != len(set(ids)):
            raise ValueError(f"window ids must be unique: {ids}")
        return windows


def load_definitions(path: Path) -> list[WindowDef]:
    """conf/windows.yaml, validated (a ValueError names what is wrong)."""
    return WindowsFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {}).windows


def definitions(settings: Settings) -> list[WindowDef]:
    return load_definitions(settings.path(settings.windows.file))


def definitions_json(defs: list[WindowDef]) -> str:
    """The JSON the Java operators read (WindowSpec.parseAll)."""
    return json.dumps([d.model_dump() for d in defs])
