"""Rule limits (operators/rule_limits.py, docs/security.md): judged before the `cel` package sees a rule.

The cases that crash or stall the `cel` package today run in a subprocess: if a refusal ever
regressed, the crash fails the test instead of the test run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.catalogue import Catalogue, StatSpec
from operators.rule_limits import DEFAULT_LIMITS, RuleLimits, check
from operators.rules import RuleSet, validate_rule

CATALOGUE = Catalogue(stats=[StatSpec(name="visits", agg="count")])


def literal(n: int) -> str:
    return "[" + ", ".join(str(i) for i in range(n)) + "]"


def rule(when: str, rule_id: str = "r", **extra: object) -> dict:
    return {"id": rule_id, "description": "", "when": when, **extra}


HOSTILE = {
    # a syntax error past column 65,535: cel-rust panics (a BaseException nothing catches)
    "column 65,535": ("visits > 1 && " + " " * 66_000 + ")", "is longer than 4096 characters"),
    # nested map over 40-element literal lists: aborts the process (or takes seconds per evaluation)
    "nested map": (f"{literal(40)}.map(a, {literal(40)}.map(b, {literal(40)}.map(c, c))).size() > 0",
                   "nests comprehensions deeper than 2"),
    "map of lists": (f"{literal(40)}.map(x, {literal(40)}.map(y, {literal(40)})).size() > 0",
                     "has an estimated cost above 10000"),
    # three nested all over 100-element lists: 0.3 s per evaluation
    "three all": (f"{literal(100)}.all(x, {literal(100)}.all(y, {literal(100)}.all(z, x + y + z >= 0)))",
                  "nests comprehensions deeper than 2"),
}

_CHILD = """
import json, sys
from operators.catalogue import Catalogue, StatSpec
from operators.rules import validate_rule
catalogue = Catalogue(stats=[StatSpec(name="visits", agg="count")])
print(json.dumps([validate_rule(json.loads(line), catalogue) for line in sys.stdin]))
"""


def test_hostile_rules_are_refused_before_the_cel_package_sees_them() -> None:
    lines = "".join(json.dumps(rule(when)) + "\n" for when, _ in HOSTILE.values())
    started = time.monotonic()
    child = subprocess.run([sys.executable, "-c", _CHILD], input=lines, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    reasons = json.loads(child.stdout)
    for (name, (_, expected)), reason in zip(HOSTILE.items(), reasons, strict=True):
        assert reason is not None and f"rule 'r': `when` {expected}" in reason, (name, reason)
    assert time.monotonic() - started < 60  # a refusal never evaluates: no 0.3 s per case


def test_what_each_limit_refuses() -> None:
    cases = {
        "(" * 31 + "visits" + ")" * 31 + " > 0": "is nested deeper than 32 levels",
        " + ".join(["1"] * 40) + " > visits": "is nested deeper than 32 levels",
        f"size({literal(129)}) > visits": "has a list literal of more than 128 elements",
        "size({" + ", ".join(f"{i}: {i}" for i in range(129)) + "}) > visits": "has a map literal of more than 128",
        "event.values.exists(k, k.matches('^a'))": "calls matches() inside a comprehension",
        "event.values.exists(k, k + 'x' == 'ax')": "builds strings inside a comprehension",
        "event.values.exists(k, string(k) == 'a')": "builds strings inside a comprehension",
        " && ".join(["event.name.matches('^a')"] * 5): "calls matches() more than 4 times",
        "event.values.all(k, event.values.all(j, k != j || j == k))": "has an estimated cost above 10000",
    }
    for when, expected in cases.items():
        reason = validate_rule(rule(when), CATALOGUE)
        assert reason is not None and reason.startswith(f"rule 'r': `when` {expected}"), (when[:60], reason)
    accepted = ["event.values.exists(k, k == 'a') && visits > 0", " + ".join(["1"] * 30) + " > visits",
                " && ".join(["event.name.matches('^a')"] * 4),
                f"{literal(40)}.map(x, {literal(40)}.map(y, x + y)).size() > 0",
                "[1, 2].map(x, x > 1, x * 2).size() == visits", "has(event.values.a) ? event.values.a > 0 : false"]
    for when in accepted:
        assert validate_rule(rule(when), CATALOGUE) is None, when
    assert validate_rule(rule("visits > 0", tenant="é" * 128), CATALOGUE) is None
    assert validate_rule(rule("visits > 0", tenant="é" * 129), CATALOGUE) == \
        "rule 'r': `tenant` is longer than 256 bytes UTF-8"


def test_limits_are_configurable() -> None:
    when = "[1, 2, 3].all(x, x > visits)"
    assert validate_rule(rule(when), CATALOGUE) is None
    short = RuleLimits(max_expression_length=20)
    assert "is longer than 20 characters" in (validate_rule(rule(when), CATALOGUE, short) or "")
    assert "estimated cost above 10" in (validate_rule(rule(when), CATALOGUE, RuleLimits(max_cost=10)) or "")


def test_rule_count_per_tenant_is_bounded() -> None:
    rules = RuleSet(CATALOGUE, limits=RuleLimits(max_rules_per_tenant=2))

    def put(rule_id: str, **extra: object) -> str | None:
        return rules.apply_change(rule_id, json.dumps(rule("visits > 1", rule_id, **extra)).encode())

    assert put("a", tenant="acme") is None and put("b", tenant="acme") is None
    assert put("a", tenant="acme") is None  # replacing a rule is not one more
    assert put("c", tenant="acme") == \
        "rule 'c': tenant 'acme' already has 2 rules, the most allowed (rule_limits.max_rules_per_tenant)"
    assert put("c", tenant="other") is None  # another tenant's budget
    assert put("g1") is None and put("g2") is None
    assert put("g3") == \
        "rule 'g3': every tenant already has 2 rules, the most allowed (rule_limits.max_rules_per_tenant)"
    assert rules.apply_change("a", None) is None and put("d", tenant="acme") is None  # a delete frees one
    assert sorted(rules.rules) == ["b", "c", "d", "g1", "g2"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("()[]{}.,!-+?:'\" a1xs&|<=>") , max_size=600))
def test_check_never_raises(text: str) -> None:
    verdict = check(text)  # not a RecursionError, whatever the nesting
    assert verdict.refused is None or verdict.unreadable is None


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=200), st.sampled_from(["(", "[", "f("]))
def test_nesting_is_refused_exactly_above_the_limit(depth: int, opening: str) -> None:
    closing = {"(": ")", "[": "]", "f(": ")"}[opening]
    when = opening * depth + "1" + closing * depth
    levels = depth + 1  # each bracket is a node above the literal
    verdict = check(when)
    assert (verdict.refused is not None) == (levels > DEFAULT_LIMITS.max_depth), (depth, verdict)


def test_per_tenant_views_stay_bounded_whatever_the_tenant_names() -> None:
    limits = RuleLimits(max_cached_tenants=8)
    rules = RuleSet(CATALOGUE, limits=limits)
    assert rules.apply_change("all", json.dumps(rule("visits > 1", "all")).encode()) is None
    for i in range(20):  # 20 tenants with a rule of their own: more than the cache keeps
        assert rules.apply_change(f"own{i}", json.dumps(rule("visits > 2", f"own{i}", tenant=f"t{i}")).encode()) is None
    shared = rules.for_tenant("x" * 256)
    for i in range(10_000):  # hostile event content: distinct, maximal tenant names
        assert rules.for_tenant(f"{i:0256d}") is shared
    assert rules.cached_views() == 1 and shared.ids == ("all",)
    for _ in range(3):
        for i in range(20):
            view = rules.for_tenant(f"t{i}")
            assert view.ids == ("all", f"own{i}")  # an evicted view is rebuilt the same
            assert rules.cached_views() <= limits.max_cached_tenants
    assert rules.cached_views() == limits.max_cached_tenants
