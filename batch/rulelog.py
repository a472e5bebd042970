"""The versioned rule log (docs/batch.md): the rule set live at any rules_version.

The job (io.segstream.flink.EvaluateUsers, subtask 0) writes to the non-compacted `rules-log` topic
one entry per record of the rules topic, valid or not, {"version", "rule_id", "value", "accepted",
"reason"} (version = the rules_version of the evaluations after it), and at each start the initial
rules it runs with, {"version", "initial"}. The rule set at version v is the last initial entry at
or before v (else the rules file) with every accepted change up to v applied in order, which is
how the job builds it, after a restore too (EvaluateUsers.syncRules).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import msgspec
import yaml

from operators.catalogue import Catalogue
from operators.evaluator import Evaluator
from operators.rules import RuleSet, compile_rule


class RuleLogGap(ValueError):
    """The history names a rules_version the log cannot rebuild."""


def read_rule_log(bootstrap: str, topic: str) -> list[dict]:
    """Every entry of the rules-log topic, in log order (empty if the topic does not exist)."""
    from confluent_kafka.admin import AdminClient

    from segstream.kafka_admin import read_topic

    if topic not in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15).topics:
        return []
    return [msgspec.json.decode(m.value) for m in read_topic(bootstrap, topic) if m.value]


def rules_file(path: str | Path) -> list[dict]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return list(data.get("rules") or [])


class RuleHistory:
    """Evaluators for every rules_version: one per version, built on first use.

    `fixed` (a rule list) replaces the log: every event is evaluated under it, whatever its version
    (recomputing the past under new definitions)."""

    def __init__(self, catalogue: Catalogue, initial: list[dict], log: Iterable[dict] = (),
                 fixed: list[dict] | None = None) -> None:
        self.catalogue = catalogue
        self.fixed = fixed
        self._initial: list[tuple[int, list[dict]]] = [(0, initial)]
        self._changes: dict[int, tuple[str, str | None]] = {}
        self.latest = 0
        for entry in log:
            version = int(entry["version"])
            if "initial" in entry:
                self._initial.append((version, json.loads(entry["initial"])))
            elif entry.get("accepted"):
                self._changes[version] = (entry["rule_id"], entry.get("value"))
            self.latest = max(self.latest, version)
        self._known = {0} | {v for v, _ in self._initial} | set(range(1, self.latest + 1))
        self._evaluators: dict[int, Evaluator] = {}

    def rule_set(self, version: int | None) -> RuleSet:
        if self.fixed is not None:
            return RuleSet(self.catalogue, [compile_rule(r, self.catalogue) for r in self.fixed])
        v = self.latest if version is None else version
        if v not in self._known:
            raise RuleLogGap(f"rules_version {v} is not in the rule log (it holds 0..{self.latest}): "
                             "the rules-log topic lost entries, or events predate it")
        initial = [rules for at, rules in self._initial if at <= v][-1]
        rules = RuleSet(self.catalogue, [compile_rule(r, self.catalogue) for r in initial])
        for at in sorted(x for x in self._changes if x <= v):
            rule_id, value = self._changes[at]
            # Accepted when it arrived; the job ignores one its catalogue now refuses, and so does this.
            rules.apply_change(rule_id, value.encode() if value is not None else None)
        return rules

    def evaluator(self, version: int | None) -> Evaluator:
        key = -1 if self.fixed is not None else (self.latest if version is None else version)
        evaluator = self._evaluators.get(key)
        if evaluator is None:
            evaluator = self._evaluators[key] = Evaluator(self.catalogue, self.rule_set(version))
        return evaluator
