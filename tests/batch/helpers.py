"""Crafted histories for the batch layer's tests: events, their evaluations by the Python engine
(the job's would be byte-identical: tests/segstream/test_differential.py) and the rows the job's
sink would write for them."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import yaml

from batch.history import HistoryRow
from batch.rulelog import RuleHistory
from operators.catalogue import load_catalogue
from operators.events import Event, encode_event
from segstream.config import PROJECT_ROOT

CATALOGUE_PATH = PROJECT_ROOT / "conf" / "stats.yaml"
RULES_PATH = PROJECT_ROOT / "conf" / "rules.yaml"
HOUR = 3_600_000


def catalogue():
    return load_catalogue(CATALOGUE_PATH)


def catalogue_dict() -> dict:
    return yaml.safe_load(Path(CATALOGUE_PATH).read_text())


def initial_rules() -> list[dict]:
    return yaml.safe_load(Path(RULES_PATH).read_text())["rules"]


def rule_log(changes: list[tuple[str, dict | None]]) -> list[dict]:
    """The job's rule-log entries for these rule records (all accepted), after an initial entry."""
    log: list[dict] = [{"version": 0, "initial": json.dumps(initial_rules())}]
    for version, (rule_id, rule) in enumerate(changes, start=1):
        log.append({"version": version, "rule_id": rule_id, "value": json.dumps(rule) if rule else None,
                    "accepted": True, "reason": None})
    return log


def live_evaluations(events: list[Event], versions: list[int], history: RuleHistory) -> list[dict]:
    """What the job evaluates: each event in order under the rule set of its version, one blob per user."""
    blobs: dict[tuple[str, str], bytes] = {}
    out = []
    for event, version in zip(events, versions, strict=True):
        key = (event.tenant, event.user_id)
        result = history.evaluator(version).process(blobs.get(key), event)
        blobs[key] = result.blob
        out.append(dict(result.evaluation, rules_version=version))
    return out


def rows_of(events: list[Event], evaluations: list[dict]) -> list[HistoryRow]:
    return [HistoryRow(e.tenant, e.user_id, d["seq"], d["rules_version"], encode_event(e))
            for e, d in zip(events, evaluations, strict=True)]


def mirror_records(events: list[Event], evaluations: list[dict]) -> list[tuple[bytes, bytes]]:
    """(event JSON, evaluation JSON) as the job's mirror hands them to the sink."""
    return [(encode_event(e), msgspec.json.encode(d)) for e, d in zip(events, evaluations, strict=True)]


def shopper(user: str, n: int, start: int, tenant: str = "default", amount: float = 6000.0) -> list[Event]:
    """n events of one user an hour apart: identify as member, page views, purchases."""
    events = [Event(f"{user}-0", user, start, "identify", {"member": True}, tenant)]
    for i in range(1, n):
        name = "purchase" if i % 3 == 0 else "page_view"
        values = {"amount": amount} if name == "purchase" else {"path": f"/p/{i % 7}"}
        events.append(Event(f"{user}-{i}", user, start + i * HOUR, name, values, tenant))
    return events
