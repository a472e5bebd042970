"""`segstream explain` (why a user is, or is not, in a segment) and `segstream rules try` (what a
new or changed rule would do to the users' recomputed current state), both from the history."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import cel
import msgspec
import yaml

from batch.history import Reader, user_range
from batch.replay import Replayed, replay_user
from batch.rulelog import RuleHistory
from operators.catalogue import Catalogue
from operators.events import Event
from operators.rules import CompiledRule, RuleError, RuleSet, compile_rule
from sinks.bigtable.config import BigtableConfig

_PAIRS = {"(": ")", "[": "]", "{": "}"}


def top_level_clauses(expression: str) -> tuple[str, list[str]]:
    """("||" or "&&", clauses) of the expression's top level: its `||` operands if it has several,
    else its `&&` operands; ("", [expression]) when it is neither (a ternary is one clause)."""
    for op in ("||", "&&"):
        parts, depth, quote, start, i = [], 0, "", 0, 0
        ternary = False
        while i < len(expression):
            c = expression[i]
            if quote:
                if c == "\\":
                    i += 1
                elif c == quote:
                    quote = ""
            elif c in "\"'":
                quote = c
            elif c in _PAIRS:
                depth += 1
            elif c in _PAIRS.values():
                depth -= 1
            elif depth == 0 and c == "?":
                ternary = True
            elif depth == 0 and expression.startswith(op, i):
                parts.append(expression[start:i].strip())
                start = i + 2
                i += 1
            i += 1
        parts.append(expression[start:].strip())
        if len(parts) > 1 and not ternary:
            return op, parts
    return "", [expression.strip()]


def _context(stats: dict, event: dict) -> dict:
    return dict(stats, event=event)


def _run(expression: str, context: dict) -> object:
    try:
        return cel.compile(expression).execute(context)
    except Exception as exc:  # noqa: BLE001 - an evaluation error is "not matched", as in the engine
        return {"error": str(exc)}


def read_user(b: BigtableConfig, tenant: str, user_id: str, rules: RuleHistory,
              read_timeout_s: float = 60.0) -> Replayed:
    reader = Reader(b, read_timeout_s, min(read_timeout_s, 30.0))
    try:
        rows = [row for row in reader.events(user_range(tenant, user_id, b.hash_prefix_hex))
                if (row.tenant, row.user_id) == (tenant, user_id)]
    finally:
        reader.close()
    return replay_user(tenant, user_id, rows, rules, keep_events=True)


def explain(replayed: Replayed, rules: RuleHistory, segment: str, at: int | None = None) -> dict:
    """Why the user is (not) in `segment` after event `at` (a seq; default: the latest)."""
    if not replayed.evaluations:
        raise LookupError(f"no history for user {replayed.user_id!r} in tenant {replayed.tenant!r}")
    seq = max(replayed.evaluations) if at is None else at
    if seq not in replayed.evaluations:
        raise LookupError(f"seq {seq} is not in the user's history "
                          f"({min(replayed.evaluations)}..{max(replayed.evaluations)})")
    evaluation, event = replayed.evaluations[seq], replayed.events[seq]
    rule_set = rules.rule_set(evaluation["rules_version"])
    compiled = rule_set.rules.get(segment)
    member = segment in evaluation["segments"]
    timeline = [{"seq": s, "ts": e["ts"], "change": change}
                for s, e in sorted(replayed.evaluations.items()) if s <= seq
                for change in ("entered", "exited") if segment in e[change]]
    out: dict = {"tenant": replayed.tenant, "user_id": replayed.user_id, "segment": segment, "seq": seq,
                 "ts": evaluation["ts"], "event": event.name, "rules_version": evaluation["rules_version"],
                 "member": member, "timeline": timeline}
    if not replayed.complete:
        out["note"] = (f"the history starts at seq {replayed.first_seq} (older events are past the "
                       "retention): values count only the retained events")
    if compiled is None or compiled.rule.tenant not in (None, replayed.tenant):
        out["rule"] = None
        out["decided_by"] = (f"no rule {segment!r} applies to tenant {replayed.tenant!r} "
                             f"at rules_version {evaluation['rules_version']}")
        return out
    stats = evaluation["stats"]
    event_value = {"name": event.name, "values": event.values, "ts": event.ts}
    context = _context(stats, event_value)
    op, clauses = top_level_clauses(compiled.rule.when)
    results = [{"clause": c, "value": _run(c, context)} for c in clauses]
    out["rule"] = {"id": compiled.id, "when": compiled.rule.when, "description": compiled.rule.description,
                   "tenant": compiled.rule.tenant}
    out["stats"] = {name: stats.get(name) for name in compiled.stats}
    if compiled.uses_event:
        out["event_read"] = event_value
    out["clauses"] = results
    out["decided_by"] = _decider(op, results, member)
    return out


def _decider(op: str, results: list[dict], member: bool) -> str:
    """The clause that settled the rule, reading left to right as CEL's short circuit does."""
    if op == "&&":
        for r in results:
            if r["value"] is not True:
                return f"{r['clause']!r} is {_show(r['value'])}: the conjunction is not true"
        return "every clause is true"
    if op == "||":
        for r in results:
            if r["value"] is True:
                return f"{r['clause']!r} is true"
        return "no clause is true"
    return f"the expression is {_show(results[0]['value'])}" + ("" if member else " (not true: not matched)")


def _show(value: object) -> str:
    if isinstance(value, dict) and "error" in value:
        return f"an evaluation error ({value['error']}), which counts as not matched"
    return msgspec.json.encode(value).decode()


def load_rule_file(path: str, catalogue: Catalogue) -> list[CompiledRule]:
    """One rule (a mapping with id/when), or a `rules:` list, YAML or JSON; RuleError names every bad one."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    raw = data.get("rules") if isinstance(data, dict) and "rules" in data else [data]
    compiled, problems = [], []
    for i, rule in enumerate(raw or []):
        try:
            compiled.append(compile_rule(rule, catalogue))
        except RuleError as exc:
            problems.append(f"rule {i}: {exc}")
    if problems or not compiled:
        raise RuleError(f"{path}: " + ("; ".join(problems) or "no rule"))
    return compiled


@dataclass
class _Tally:
    users: int = 0
    now: int = 0
    would_be: int = 0
    errors: int = 0
    enter: list[str] = field(default_factory=list)
    exit: list[str] = field(default_factory=list)


def dry_run(rules: list[CompiledRule], catalogue: Catalogue, profiles: Iterable[dict],
            examples: int = 5, seed: int = 0) -> dict:
    """For each rule, over the users' recomputed current state (profiles lines of the recompute:
    last evaluation with its `last_event`): who is in the segment now, who would be, and the
    difference (enter / exit), with a few examples of each."""
    rule_set = RuleSet(catalogue, rules)
    counts = {r.id: _Tally() for r in rules}
    for p in profiles:
        tenant_rules = rule_set.for_tenant(p["tenant"])
        event = p["last_event"]
        matched, errors = tenant_rules.evaluate(
            tenant_rules.all_mask, p["stats"], Event(p["event_id"], p["user_id"], event["ts"], event["name"],
                                                     event["values"], p["tenant"]))
        ids = set(tenant_rules.ids_of(matched))
        failed = set(tenant_rules.ids_of(errors))
        for rule in rules:
            if rule.rule.tenant not in (None, p["tenant"]):
                continue
            c = counts[rule.id]
            c.users += 1
            now, would = rule.id in p["segments"], rule.id in ids
            c.now += now
            c.would_be += would
            c.errors += rule.id in failed
            who = f"{p['tenant']}/{p['user_id']}"
            if would and not now:
                c.enter.append(who)
            elif now and not would:
                c.exit.append(who)
    rng = random.Random(seed)
    out = {}
    for rule in rules:
        c = counts[rule.id]
        out[rule.id] = {"when": rule.rule.when, "users": c.users, "in_segment_now": c.now,
                        "would_be_in_segment": c.would_be, "would_enter": len(c.enter),
                        "would_exit": len(c.exit), "evaluation_errors": c.errors,
                        "enter_examples": sorted(rng.sample(c.enter, min(examples, len(c.enter)))),
                        "exit_examples": sorted(rng.sample(c.exit, min(examples, len(c.exit))))}
    return out
