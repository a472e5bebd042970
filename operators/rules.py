"""Segment rules: CEL expressions over the stat catalogue and the current event.

A rule is {"id", "tenant" (optional: omitted = every tenant), "description", "when"}. Rules are
validated and compiled once (here), then evaluated per event for the rules the evaluator asks for.
The rule set changes at run time through `RuleSet.apply_change` (the compacted rules topic: key =
rule id, value = rule JSON, empty value = delete). Semantics: docs/semantics.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cel
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from operators import ownership
from operators.catalogue import Catalogue
from operators.events import Event
from operators.rule_checks import check as conformance_check
from operators.rule_guards import event_name_guard
from operators.rule_limits import DEFAULT_LIMITS, RuleLimits, check_tenant
from operators.rule_limits import check as limits_check

EVENT_VARIABLE = "event"
# Variables bound by CEL comprehension macros, e.g. the `k` of `event.values.exists(k, k == "a")`.
_MACRO_BINDING = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")


class RuleError(ValueError):
    """A rule (or rules file) that cannot be used; the message is the reason."""


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: str = Field(min_length=1, max_length=200)
    tenant: str | None = Field(default=None, min_length=1)
    description: str
    when: str = Field(min_length=1)


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    program: cel.Program
    stats: tuple[str, ...]  # stat names the expression reads
    uses_event: bool
    # If set, the expression is `event.name == <guard> && ...`: false for any other event name.
    event_guard: str | None

    @property
    def id(self) -> str:
        return self.rule.id


def compile_rule(raw: str | bytes | Mapping, catalogue: Catalogue,
                 limits: RuleLimits = DEFAULT_LIMITS) -> CompiledRule:
    """Parse, validate and compile one rule (JSON text or a dict); raise RuleError with the reason."""
    data = _decode(raw)
    try:
        rule = Rule.model_validate(data)
    except ValidationError as exc:
        raise RuleError("; ".join(_describe(err) for err in exc.errors())) from None
    problem = check_tenant(rule.tenant, limits)
    if problem is not None:
        raise RuleError(f"rule {rule.id!r}: {problem}")
    # The limits are judged before the `cel` package sees the text: it panics or stalls on some.
    verdict = limits_check(rule.when, limits)
    if verdict.refused is not None:
        raise RuleError(f"rule {rule.id!r}: `when` {verdict.refused}")
    try:
        program = cel.compile(rule.when)
    except Exception as exc:  # the binding raises ValueError, but any failure means the same
        raise RuleError(f"rule {rule.id!r}: `when` does not compile: {exc}") from None
    if verdict.unreadable is not None:
        raise RuleError(f"rule {rule.id!r}: `when` cannot be read by the limit checks: {verdict.unreadable}")
    bound = set(_MACRO_BINDING.findall(rule.when))
    names = set(program.variables()) - bound
    stat_names = set(catalogue.names)
    unknown = sorted(names - stat_names - {EVENT_VARIABLE})
    if unknown:
        raise RuleError(
            f"rule {rule.id!r}: `when` uses unknown name(s) {', '.join(map(repr, unknown))}: "
            f"neither a stat in the catalogue nor `event`"
        )
    problem = conformance_check(rule.when)  # what the JVM engine would evaluate differently
    if problem is not None:
        raise RuleError(f"rule {rule.id!r}: `when` {problem}")
    return CompiledRule(
        rule=rule,
        program=program,
        stats=tuple(sorted(names & stat_names)),
        uses_event=EVENT_VARIABLE in names,
        event_guard=event_name_guard(rule.when),
    )


def validate_rule(raw: str | bytes | Mapping, catalogue: Catalogue,
                  limits: RuleLimits = DEFAULT_LIMITS) -> str | None:
    """None if the rule is valid, else the reason."""
    try:
        compile_rule(raw, catalogue, limits)
    except RuleError as exc:
        return str(exc)
    return None


def _decode(raw: str | bytes | Mapping) -> object:
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        data = json.loads(text)
    except UnicodeDecodeError:
        raise RuleError("rule is not UTF-8") from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise RuleError(f"rule is not JSON: {exc}") from None
    except RecursionError:
        raise RuleError("rule is not JSON: nested too deep") from None
    if not isinstance(data, dict):
        raise RuleError(f"rule must be a JSON object, got {type(data).__name__}")
    return data


def _describe(error: ErrorDetails) -> str:
    field = ".".join(str(part) for part in error["loc"]) or "rule"
    return f"`{field}`: {error['msg']}"


# --- per-tenant view -----------------------------------------------------------------------------------


class TenantRules:
    """The rules that apply to one tenant, sorted by id; rule k is bit k of every mask.

    Masks (ints) let the evaluator pick the rules to run and combine cached results cheaply.
    """

    def __init__(self, rules: Iterable[CompiledRule], catalogue: Catalogue) -> None:
        self.rules = tuple(sorted(rules, key=lambda r: r.id))
        self.ids = tuple(r.id for r in self.rules)
        self.all_mask = (1 << len(self.rules)) - 1
        index = {name: i for i, name in enumerate(catalogue.names)}
        self.stat_masks = [0] * len(index)  # stat index -> rules that read it
        self.event_mask = 0  # rules that read `event` and have no guard: run on every event
        self.guarded: dict[str, int] = {}  # event name -> guarded rules that may match it
        self.guarded_mask = 0
        for k, rule in enumerate(self.rules):
            bit = 1 << k
            for name in rule.stats:
                self.stat_masks[index[name]] |= bit
            if rule.event_guard is not None:
                self.guarded[rule.event_guard] = self.guarded.get(rule.event_guard, 0) | bit
                self.guarded_mask |= bit
            elif rule.uses_event:
                self.event_mask |= bit
        digest = hashlib.blake2b(digest_size=8)
        for rule in self.rules:
            digest.update(json.dumps([rule.id, rule.rule.when]).encode())
        self.fingerprint = int.from_bytes(digest.digest(), "big")

    def ids_of(self, mask: int) -> list[str]:
        """Sorted ids of the rules in mask."""
        ids = []
        while mask:
            low = mask & -mask
            ids.append(self.ids[low.bit_length() - 1])
            mask ^= low
        return ids

    def evaluate(self, mask: int, stats: dict[str, object], event: Event) -> tuple[int, int]:
        """Run the rules in mask on the stat values (by name) -> (matched mask, error mask); never raises."""
        chosen = []
        while mask:
            low = mask & -mask
            mask ^= low
            chosen.append((low.bit_length() - 1, low))
        variables: dict[str, object] = {}
        uses_event = False
        for k, _ in chosen:
            for name in self.rules[k].stats:
                variables[name] = stats[name]
            uses_event = uses_event or self.rules[k].uses_event
        if uses_event:
            variables[EVENT_VARIABLE] = {"name": event.name, "values": event.values, "ts": event.ts}
        # One context for all these rules: converting values to CEL is the expensive part.
        context = cel.Context(variables)
        matched = errors = 0
        for k, bit in chosen:
            try:
                result = self.rules[k].program.execute(context)
            except Exception:  # any evaluation failure (no such overload, missing key, ...) is "not matched"
                errors |= bit
                continue
            if result is True:
                matched |= bit
            elif result is not False:
                errors |= bit  # a rule must yield a bool
        return matched, errors


# --- the rule set ---------------------------------------------------------------------------------------


class RuleSet:
    """All rules, changeable at run time; `error_count` counts rule evaluations that failed."""

    def __init__(self, catalogue: Catalogue, rules: Iterable[CompiledRule] = (),
                 limits: RuleLimits = DEFAULT_LIMITS) -> None:
        self.catalogue = catalogue
        self.limits = limits
        self.rules: dict[str, CompiledRule] = {}
        for rule in rules:
            if rule.id in self.rules:
                raise RuleError(f"duplicate rule id {rule.id!r}")
            self.rules[rule.id] = rule
        self.error_count = 0
        # Views of the tenants that have rules of their own, least recently used first, at most
        # limits.max_cached_tenants; every other tenant shares one view (the rules for every tenant),
        # so event content (a stream of distinct tenant names) cannot grow this.
        self._by_tenant: OrderedDict[str | None, TenantRules] = OrderedDict()
        self._own_rules: frozenset[str] = frozenset()
        self._changed()

    def __len__(self) -> int:
        return len(self.rules)

    def __reduce__(self) -> tuple:
        # Compiled cel programs do not pickle; the rules do, and compile again (PyFlink ships functions pickled).
        rules = [compiled.rule.model_dump(exclude_none=True) for compiled in self.rules.values()]
        return _rule_set, (self.catalogue, rules, self.error_count, self.limits)

    def for_tenant(self, tenant: str) -> TenantRules:
        key = tenant if tenant in self._own_rules else None
        view = self._by_tenant.get(key)
        if view is not None:
            self._by_tenant.move_to_end(key)
            return view
        applicable = (r for r in self.rules.values() if r.rule.tenant is None or r.rule.tenant == key)
        view = self._by_tenant[key] = TenantRules(applicable, self.catalogue)
        if len(self._by_tenant) > self.limits.max_cached_tenants:
            self._by_tenant.popitem(last=False)
        return view

    def cached_views(self) -> int:
        """How many per-tenant views are cached (bounded by limits.max_cached_tenants)."""
        return len(self._by_tenant)

    def _changed(self) -> None:
        self._by_tenant.clear()
        self._own_rules = frozenset(r.rule.tenant for r in self.rules.values() if r.rule.tenant is not None)

    def apply_signed_change(self, key: str, value: bytes | None, signature: bytes | None,
                            keys: Sequence[str]) -> str | None:
        """apply_change for a record of the rules topic as the job reads it: refused (the reason)
        unless `signature` (its segstream-signature header) is valid with one of `keys` and its owner
        may write this rule (operators/ownership.py)."""
        owner, reason = ownership.verify(keys, ownership.RULE, key.encode("utf-8", "surrogatepass"), value,
                                         signature)
        if owner is None:
            return reason
        return ownership.rule_scope(owner, key) or self.apply_change(key, value, owner)

    def apply_change(self, key: str, value: bytes | None, owner: str = "") -> str | None:
        """Apply one record of the rules topic; an invalid one changes nothing and returns the reason.

        An empty value deletes rule `key` (deleting an unknown id is a no-op: tombstones replay).
        `owner`: the tenant the record's writer acts for (empty: an operator, who may name any tenant).
        """
        if not value:
            if self.rules.pop(key, None) is not None:
                self._changed()
            return None
        try:
            rule = compile_rule(value, self.catalogue, self.limits)
        except RuleError as exc:
            return str(exc)
        if rule.id != key:
            return f"record key {key!r} does not match rule id {rule.id!r}"
        tenant = rule.rule.tenant
        refused = ownership.rule_tenant(owner, key, tenant)
        if refused is not None:
            return refused
        others = sum(1 for r in self.rules.values() if r.rule.tenant == tenant and r.id != key)
        if others >= self.limits.max_rules_per_tenant:
            scope = "every tenant" if tenant is None else f"tenant {tenant!r}"
            return (f"rule {key!r}: {scope} already has {others} rules, "
                    f"the most allowed (rule_limits.max_rules_per_tenant)")
        self.rules[key] = rule
        self._changed()
        return None


def _rule_set(catalogue: Catalogue, rules: list[dict], error_count: int,
              limits: RuleLimits = DEFAULT_LIMITS) -> RuleSet:
    rule_set = RuleSet(catalogue, [compile_rule(rule, catalogue, limits) for rule in rules], limits)
    rule_set.error_count = error_count
    return rule_set


def load_rules(path: str | Path, catalogue: Catalogue, limits: RuleLimits = DEFAULT_LIMITS) -> RuleSet:
    """The initial rule set from a YAML file with a `rules:` list; raise RuleError naming every bad rule."""
    with open(path, encoding="utf-8") as file:
        try:
            data = yaml.safe_load(file) or {}
        except yaml.YAMLError as exc:
            raise RuleError(f"{path}: not YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rules") or [], list):
        raise RuleError(f"{path}: expected a mapping with a `rules:` list")
    compiled, problems = [], []
    for position, raw in enumerate(data.get("rules") or []):
        try:
            if not isinstance(raw, dict):
                raise RuleError(f"rule must be a mapping, got {type(raw).__name__}")
            compiled.append(compile_rule(raw, catalogue, limits))
        except RuleError as exc:
            problems.append(f"rules[{position}]: {exc}")
    seen: set[str] = set()
    for rule in compiled:
        if rule.id in seen:
            problems.append(f"duplicate rule id {rule.id!r}")
        seen.add(rule.id)
    if problems:
        raise RuleError(f"{path}: invalid rules:\n" + "\n".join(problems))
    return RuleSet(catalogue, compiled, limits)
