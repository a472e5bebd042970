"""Load-time conformance checks (operators/rule_checks.py): what both engines refuse, and why."""

from __future__ import annotations

import pytest

from operators.catalogue import parse_catalogue
from operators.rule_checks import check, tokens
from operators.rules import validate_rule

CATALOGUE = parse_catalogue({"stats": [{"name": "n", "agg": "count"}, {"name": "s", "agg": "last", "field": "s"}]})


def reason(when: str) -> str | None:
    return validate_rule({"id": "r", "description": "", "when": when}, CATALOGUE)


@pytest.mark.parametrize(
    "when",
    [
        "s.matches('^[0-9]+$')",
        "matches(s, '[A-Za-z_]')",
        "s.matches('\\\\\\\\d')",  # an escaped backslash followed by d: not a class
        "s.matches(r'[.]')",
        "{'a': 1, 'b': 2}.a == 1",
        "{1: 'a', 2u: 'b', true: 'c'}[1] == 'a'",
        "{s: 1}.size() == 1",
        "string(n) == '1'",
        "duration('1h') > duration('1m')",
        "n > -1 && n - -1 > 0 && (-1.5) < 0.0",
        "0 - n < 1",
        "'-' + s != '' // a comment with - n and matches(s, x) and {1: 1, 1: 2}",
    ],
)
def test_accepted(when):
    assert reason(when) is None


@pytest.mark.parametrize(
    "when, words",
    [
        ("s.matches(s)", "pattern that is not a string literal"),
        ("matches(s, 'a' + 'b')", "pattern that is not a string literal"),
        ("s.matches('\\\\d+')", "uses \\d"),
        ("s.matches(r'\\w')", "uses \\w"),
        ("s.matches('\\\\S')", "uses \\S"),
        ("s.matches('\\\\bx')", "uses \\b"),
        ("s.matches('[[:alpha:]]')", "uses [:class:]"),
        ("s.matches('''\\\\D''')", "uses \\D"),
        ("{'a': 1, 'a': 2}.a == 2", "repeated key"),
        ("{'a': 1, \"a\": 2}.a == 2", "repeated key"),
        ("{1: 'a', 1u: 'b'}[1] == 'b'", "repeated key"),
        ("{16: 'a', 0x10: 'b'}[16] == 'b'", "repeated key"),
        ("{'\\x41': 1, 'A': 2}.A == 2", "repeated key"),
        ("{s: 1, 'b': 2}.b == 2", "a key that is not a literal"),
        ("{1.5: 1}.size() == 1", "float, bytes or null key"),
        ("{null: 1}.size() == 1", "float, bytes or null key"),
        ("{b'a': 1}.size() == 1", "float, bytes or null key"),
        ("string(duration('1h')) == '1h0m0s'", "string() in a rule that calls duration() or timestamp()"),
        ("string(n) == '1' && timestamp('2023-01-01T00:00:00Z') < timestamp('2024-01-01T00:00:00Z')", "string()"),
        ("-n < 0", "not a number literal"),
        ("--n == 1", "not a number literal"),
        ("-(-9223372036854775807 - 1) < 0", "not a number literal"),
        ("!(-n < 0)", "not a number literal"),
    ],
)
def test_refused(when, words):
    text = reason(when)
    assert text is not None and text.startswith("rule 'r': `when` ") and words in text, text


def test_tokens_decode_cel_strings():
    assert tokens(r'''r"\d" + '\x41\101\u0041\U00000041' + """a"b""" + b'\n' // c''') == [
        ("string", "\\d"), ("op", "+"), ("string", "AAAA"), ("op", "+"), ("string", 'a"b'), ("op", "+"),
        ("bytes", "\n"),
    ]
    assert tokens("1u 0x1F 1.5e3 .5 1e3 a_1") == [
        ("uint", "1u"), ("int", "0x1F"), ("float", "1.5e3"), ("float", ".5"), ("float", "1e3"), ("name", "a_1"),
    ]


def test_unreadable_text_is_refused_not_raised():
    assert check("'\\U00110000' == ''").startswith("cannot be read")
    assert check("'abc").startswith("cannot be read")
    assert check("`n`").startswith("cannot be read")


def test_default_rules_pass_the_checks():
    import yaml

    for rule in yaml.safe_load(open("conf/rules.yaml", encoding="utf-8"))["rules"]:
        assert check(rule["when"]) is None, rule["id"]
