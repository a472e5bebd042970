"""Rules: validation reasons, loading, run-time changes, tenant scoping, evaluation errors and the
event-name guard."""

from __future__ import annotations

import json
from pathlib import Path

import cel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.catalogue import load_catalogue, parse_catalogue
from operators.events import Event
from operators.rule_guards import event_name_guard
from operators.rules import RuleError, RuleSet, compile_rule, load_rules, validate_rule

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = parse_catalogue(
    {
        "stats": [
            {"name": "visits", "agg": "count"},
            {"name": "avg_spend", "agg": "avg", "field": "amount"},
            {"name": "sessions", "agg": "sessions"},
        ]
    }
)


def rule(rule_id: str = "r", when: str = "visits > 1", **extra) -> dict:
    return {"id": rule_id, "description": "d", "when": when, **extra}


def as_json(**fields) -> bytes:
    return json.dumps(rule(**fields)).encode()


def test_valid_rules_in_every_form():
    assert validate_rule(rule(), CATALOGUE) is None
    assert validate_rule(json.dumps(rule()), CATALOGUE) is None
    assert validate_rule(as_json(tenant="acme"), CATALOGUE) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        ({"description": "d", "when": "true"}, "`id`: Field required"),
        ({"id": "r", "description": "d"}, "`when`: Field required"),
        ({"id": "r", "when": "true"}, "`description`: Field required"),
        ({"id": 7, "description": "d", "when": "true"}, "`id`: Input should be a valid string"),
        (rule(tenant=3), "`tenant`: Input should be a valid string"),
        (rule(tenant=""), "`tenant`: String should have at least 1 character"),
        (rule(when=""), "`when`: String should have at least 1 character"),
        (rule(when=True), "`when`: Input should be a valid string"),
        (rule(owner="me"), "`owner`: Extra inputs are not permitted"),
        (rule(when="visits >"), "`when` does not compile"),
        (rule(when="visitz > 1 && spend > 2"), "unknown name(s) 'spend', 'visitz'"),
    ],
)
def test_invalid_rules_give_a_reason(raw, reason):
    assert reason in validate_rule(raw, CATALOGUE)


def test_comprehension_variables_are_not_unknown_names():
    assert validate_rule(rule(when='event.values.exists(k, k == "a") && [1, 2].all(x, x < visits)'), CATALOGUE) is None


def test_compiled_rule_knows_what_it_reads():
    compiled = compile_rule(rule(when='visits > 1 && event.name == "buy" && avg_spend != null'), CATALOGUE)
    assert compiled.stats == ("avg_spend", "visits")
    assert compiled.uses_event
    assert compiled.event_guard == "buy"


def test_default_rules_load():
    rules = load_rules(ROOT / "conf" / "rules.yaml", load_catalogue(ROOT / "conf" / "stats.yaml"))
    assert len(rules) >= 5


def test_load_rules_lists_every_problem(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - {id: a, description: d, when: 'visits > 1'}\n"
        "  - {id: a, description: d, when: 'visits > 2'}\n"
        "  - {id: b, description: d, when: 'nope > 1'}\n"
        "  - just text\n"
    )
    with pytest.raises(RuleError) as raised:
        load_rules(path, CATALOGUE)
    message = str(raised.value)
    assert "duplicate rule id 'a'" in message
    assert "rules[2]" in message and "'nope'" in message
    assert "rules[3]" in message


def test_empty_rules_file(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n")
    assert len(load_rules(path, CATALOGUE)) == 0


def test_apply_change_add_replace_delete():
    rules = RuleSet(CATALOGUE)
    assert rules.apply_change("r", as_json(when="visits > 1")) is None
    assert rules.rules["r"].rule.when == "visits > 1"
    assert rules.apply_change("r", as_json(when="visits > 5")) is None
    assert rules.rules["r"].rule.when == "visits > 5"
    assert rules.apply_change("r", None) is None
    assert "r" not in rules.rules
    assert rules.apply_change("r", b"") is None  # deleting again: a replayed tombstone


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("r", b"{", "not JSON"),
        ("r", as_json(when="visits >>> 1"), "does not compile"),
        ("r", as_json(when="nope"), "unknown name"),
        ("other", as_json(), "does not match rule id 'r'"),
    ],
)
def test_invalid_change_changes_nothing(key, value, reason):
    rules = RuleSet(CATALOGUE, [compile_rule(rule(), CATALOGUE)])
    before = rules.for_tenant("t").fingerprint
    assert reason in rules.apply_change(key, value)
    assert list(rules.rules) == ["r"] and rules.rules["r"].rule.when == "visits > 1"
    assert rules.for_tenant("t").fingerprint == before


def test_tenant_scoping():
    rules = RuleSet(
        CATALOGUE,
        [compile_rule(rule("all"), CATALOGUE), compile_rule(rule("mine", tenant="acme"), CATALOGUE)],
    )
    assert rules.for_tenant("acme").ids == ("all", "mine")
    assert rules.for_tenant("other").ids == ("all",)
    rules.apply_change("theirs", as_json(rule_id="theirs", tenant="other"))
    assert rules.for_tenant("other").ids == ("all", "theirs")
    assert rules.for_tenant("acme").ids == ("all", "mine")


def test_tenant_fingerprint_changes_with_its_rules_only():
    rules = RuleSet(CATALOGUE, [compile_rule(rule("mine", tenant="acme"), CATALOGUE)])
    acme, other = rules.for_tenant("acme").fingerprint, rules.for_tenant("other").fingerprint
    rules.apply_change("mine", as_json(rule_id="mine", tenant="acme", when="visits > 9"))
    assert rules.for_tenant("acme").fingerprint != acme
    assert rules.for_tenant("other").fingerprint == other


EVENT = Event(event_id="e", user_id="u", ts=5, name="buy", values={"amount": 10})


def evaluate(*whens: str) -> tuple[list[str], list[str]]:
    rules = RuleSet(CATALOGUE, [compile_rule(rule(f"r{i}", when), CATALOGUE) for i, when in enumerate(whens)])
    view = rules.for_tenant("t")
    matched, errors = view.evaluate(view.all_mask, {"visits": 3, "avg_spend": None, "sessions": 1}, EVENT)
    return view.ids_of(matched), view.ids_of(errors)


def test_evaluation_errors_are_not_matches_and_never_raise():
    matched, errors = evaluate(
        "visits > 1",  # matches
        "avg_spend > 5000",  # null compared with a number
        "event.values.missing > 1",  # no such key
        "visits",  # not a bool
        "avg_spend != null && avg_spend > 5000",  # false, no error
        "visits / 0 == 1",  # division by zero
    )
    assert matched == ["r0"]
    assert errors == ["r1", "r2", "r3", "r5"]


@pytest.mark.parametrize(
    ("expression", "guard"),
    [
        ('event.name == "buy"', "buy"),
        ("event.name == 'buy' && visits > 1", "buy"),
        ('visits > 1 && "buy" == event.name', "buy"),
        ('(visits > 1 || sessions > 2) && event.name == "buy"', "buy"),
        ('event.name == "buy" || visits > 1', None),
        ('event.name == "buy" ? true : false', None),
        ('event.name == "b\\"uy" && true', None),
        ('event.name == r"buy"', None),
        ('event.name == """buy"""', None),
        ('event.name != "buy"', None),
        ('!(event.name == "buy")', None),
        ('event.values.name == "buy"', None),
        ('f(event.name == "buy" && visits)', None),
        ('visits > 1 // event.name == "buy"', None),
    ],
)
def test_event_name_guard(expression, guard):
    assert event_name_guard(expression) == guard


names = st.sampled_from(["buy", "view", "b", ""])


@given(name=names, literal=names, left=st.sampled_from(["visits > 1", "avg_spend > 1", "1/0 == 1", "visits"]))
def test_a_guarded_rule_is_false_on_any_other_event_name(name, literal, left):
    expression = f'{left} && event.name == "{literal}"'
    assert event_name_guard(expression) == literal
    if name != literal:
        context = {"visits": 3, "avg_spend": None, "event": {"name": name, "values": {}, "ts": 1}}
        assert cel.compile(expression).execute(context) is False


# --- the Python subset against cel ---------------------------------------------------------------------
