"""Writes the fixtures the JVM rules tests compare against: what the Python engine (operators/) does.

    cd /work/wt-rules && /work/main/.venv/bin/python jvm/engine/src/test/python/gen_rules_fixtures.py

Outputs (jvm/engine/src/test/resources/rules/, ASCII JSON):
  corpus.json       the spike's conformance corpus with the Python verdict of each case
                    (compile_rule + RuleSet.for_tenant(...).evaluate, as the evaluator calls it)
  validation.json   raw rules-topic values (hex) -> validate_rule's reason (or null)
  static.json       expressions -> event_name_guard, macro-bound names, rule_checks.check,
                    and compile_rule's stats / uses_event / reason
  fingerprints.json rule lists -> TenantRules.fingerprint (unsigned, as Python stores it)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[5]
sys.path.insert(0, str(ROOT))

from operators.catalogue import Catalogue, StatSpec  # noqa: E402
from operators.events import Event  # noqa: E402
from operators.rule_checks import check  # noqa: E402
from operators.rule_guards import event_name_guard  # noqa: E402
from operators.rules import _MACRO_BINDING, RuleError, RuleSet, compile_rule, validate_rule  # noqa: E402

OUT = ROOT / "jvm/engine/src/test/resources/rules"
SPIKE_CORPUS = Path("/work/spike/corpus.json")


def dump(name: str, data: object) -> None:
    text = json.dumps(data, indent=None if name == "static.json" else 1, ensure_ascii=True, allow_nan=True)
    (OUT / name).write_text(text + "\n", encoding="ascii")


def catalogue_of(declarations: dict) -> Catalogue:
    specs = []
    for name, d in declarations.items():
        spec = {"name": name, "agg": d["agg"]}
        if d["agg"] in ("sum", "avg", "min", "max", "first", "last", "distinct"):
            spec["field"] = "f_" + name
        specs.append(StatSpec(**spec))
    return Catalogue(stats=specs)


# More cases beyond the spike's corpus, on its default activation (id "x..."): where the JVM re-binds
# or rewrites CEL-Java (size, string order, index, in, string(double), strict exists/all) and around.
EXTRA = [
    "0.0/0.0 == 0.0/0.0", "0.0/0.0 != 0.0/0.0", "0.0/0.0 < 1.0", "0.0/0.0 >= 1.0", "[0.0/0.0] == [0.0/0.0]",
    "0.0/0.0 in [0.0/0.0]", "string(0.0/0.0) == 'NaN'", "double('inf') > 1.0", "double('-inf') < 1.0",
    "double('nan') != 1.0", "-(-9223372036854775807 - 1) < 0", "size('héllo') == 6", "size(b'abc') == 3",
    "size([1, 2]) == 2", "size({'a': 1}) == 1", "'abc'.size() == 3", "size(last_country) == 2",
    "'😀' >= '￿'", "'😀' <= '￿'", "'a' < 'b' && 'b' > 'a' && 'a' <= 'a' && 'a' >= 'a'",
    "'' < 'a'", "'ab' < 'a'", "b'a' < b'b'", "1 < 2u", "2.5 > 1u", "true > false", "null < null",
    "[1, 2][1u] == 2", "[1, 2][2] == 0", "[1, 2][-1] == 0", "[1, 2][18446744073709551615u] == 0", "[1,2][1.0] == 2",
    "{'a': 1}['a'] == 1", "{'a': 1}['b'] == 1", "{1: 'a'}[1u] == 'a'", "{1u: 'a'}[1u] == 'a'", "{1: 'a'}[1] == 'a'",
    "{true: 'a'}[true] == 'a'", "{1: 'a'}[true] == 'a'", "1 in {1: 'a'}", "1u in {1: 'a'}", "1.0 in {1: 'a'}",
    "'a' in {'a': 1}", "'b' in {'a': 1}", "null in {'a': 1}", "1 in [1u]", "1 in [1.0]", "'a' in ['a']",
    "[1] in [[1.0]]", "event.values['amount'] == 1200", "event.values.nullfield == null", "'amount' in event.values",
    "event.values[1] == 1", "1 in event.values", "string(1.5) == '1.5'", "string(1e21) == '1000000000000000000000'",
    "string(1e-7) == '0.0000001'", "string(-0.0) == '-0'", "string(123456789.125) == '123456789.125'",
    "string(0.1 + 0.2) == '0.30000000000000004'", "string(1.0/0.0)", "string(-1.0/0.0)", "string(2.0) + 'x'",
    "string(1) == '1'", "string(1u) == '1'", "string('x') == 'x'", "string(b'abc') == 'abc'", "string(b'\\xff') == ''",
    "[0, 1].exists(x, 1/x == 1)", "[1, 0].exists(x, 1/x == 1)", "[0, 2].all(x, 1/x == 1)", "[2, 0].all(x, 1/x == 1)",
    "[1].exists(x, x)", "[1].all(x, x)", "[true, 1].exists(x, x)", "[false, 1].all(x, x)",
    "[1, 2].exists(x, x == 1 || 1/0 == 1)", "[1, 2].exists(x, x == 2 && 1/0 == 1)", "[].exists(x, 1/0 == 1)",
    "[].all(x, 1/0 == 1)", "{'a': 1}.exists(k, k == 'a')", "{'a': 1}.all(k, k == 'b')",
    "event.values.exists(k, k == 'country')",
    "[1, 2].exists(x, [0].exists(y, 1/y == 1) || x == 2)", "[1, 2].map(x, 1/(x-1)).size() == 2",
    "[0, 1].filter(x, 1/x == 1).size() == 1", "[0, 1].exists_one(x, 1/x == 1)",
    "[1, 2].all(x, x > 0) && [1, 2].exists(x, x > 1)", "last_seen > 0 && sessions >= 3 && purchases == 1",
    "avg_purchase > 5000 && min_amount < 10", "last_purchase_at == null && !has(event.values.missing)",
    "int(event.values.price) == 19", "event.values.price * 100.0 > 1998.0", "event.ts - last_seen == 0",
    "timestamp('2023-01-01T00:00:00Z') + duration('1h') > timestamp('2023-01-01T00:30:00Z')",
    "duration('1h').getMinutes() == 60", "timestamp('2023-01-01T10:00:00Z').getHours() == 10",
    "'abc'.contains('b') && 'abc'.startsWith('a') && 'abc'.endsWith('c')", "'abc'.matches('^a.c$')",
    "'AbC'.matches('(?i)abc')", "'x'.matches('[')", "'é'.matches('^.$')", "'😀'.matches('^.$')",
    "'a\nb'.matches('a.b')", "'a1'.matches('[0-9]')", "type(1) == type(2)", "dyn(1) == 1", "int('12') == 12",
    "uint(1) == 1u", "double(1) == 1.0", "bytes('a') == b'a'", "bool('true')", "bool('TRUE')", "bool('t')",
    "int(' 1')", "double(' 1.5')", "int('0x10')", "uint('1u')", "double('1e400')", "double('-0') == 0.0",
    "1 / 2 == 0", "-7 / 2 == -3", "-7 % 3 == -1", "7.0 % 2.0 == 1.0", "5u - 6u", "18446744073709551615u + 1u",
    "-9223372036854775808 / -1", "-9223372036854775808 % -1", "1 == 1u", "[1, 2] + [3] == [1, 2, 3]",
    "'a' + 'b' == 'ab'", "b'a' + b'b' == b'ab'", "{'a': 1} == {'a': 1.0}", "{'a': 1} != {'b': 1}",
    "[1, 'a'] == [1, 'a']", "[1] == [1, 2]", "null == null", "[null] == [null]", "{'a': null}.a == null",
    "has({'a': 1}.a)", "has({'a': 1}.b)", "{'a': {'b': 1}}.a.b == 1", "event.values.country == 'DE' ? true : 1",
    "true ? 1/0 == 1 : true", "false ? 1/0 == 1 : true", "!(1/0 == 1) || true", "!true", "!null",
    "1 > 0 && (2 > 1 || 1/0 == 1)", "(1/0 == 1) || (2/0 == 1) || true", "(1/0 == 1) && (2/0 == 1) && false",
    "spent + 1 > 0", "spent * 2.0 > 0.0", "distinct_pages / 3 == 3", "sessions % 2 == 1", "-purchases == -1",
    "--purchases == 1", "!!is_member", "is_member == true", "is_member != false && last_country in ['DE', 'FR']",
]


def corpus() -> None:
    if SPIKE_CORPUS.exists():
        data = json.loads(SPIKE_CORPUS.read_text(encoding="utf-8"))
    else:  # the spike's cases as the last run kept them (ids without the "x" of EXTRA)
        data = json.loads((OUT / "corpus.json").read_text(encoding="utf-8"))
        data["cases"] = [{"id": c["id"], "expr": c["expr"], "vars": c["vars"]}
                         for c in data["cases"] if not c["id"].startswith("x")]
    data["cases"] = data["cases"] + [
        {"id": f"x{i:03d}", "expr": expr, "vars": {}} for i, expr in enumerate(EXTRA, 1)
    ]
    catalogue = catalogue_of(data["declarations"])
    cases = []
    for c in data["cases"]:
        act = dict(data["defaults"])
        act.update(c["vars"])
        case = {"id": c["id"], "expr": c["expr"], "vars": c["vars"]}
        try:
            rule = compile_rule({"id": "r", "description": "", "when": c["expr"]}, catalogue)
        except RuleError as exc:
            case["verdict"], case["reason"] = "refused", str(exc)
            cases.append(case)
            continue
        case["stats"], case["uses_event"], case["guard"] = list(rule.stats), rule.uses_event, rule.event_guard
        view = RuleSet(catalogue, [rule]).for_tenant("default")
        e = act["event"]
        event = Event(event_id="e1", user_id="u1", ts=e["ts"], name=e["name"], values=e["values"])
        stats = {n: act.get(n) for n in catalogue.names}
        try:
            matched, errors = view.evaluate(view.all_mask, stats, event)
            case["verdict"] = "error" if errors else ("true" if matched else "false")
        except Exception as exc:  # the `cel` package cannot convert the value (a lone surrogate)
            case["verdict"], case["reason"] = "raised", f"{type(exc).__name__}: {exc}"
        cases.append(case)
    dump("corpus.json", {"declarations": data["declarations"], "defaults": data["defaults"], "cases": cases})


VALIDATION = [
    b"\xff", b"\xed\xa0\x80", b"", b"nope", b"[1]", b'"x"', b"1", b"1.5", b"true", b"null", b"NaN", b"{}",
    b"\xef\xbb\xbf{}", b"  ", b"\t{}", b"{} ", b'{"id": INF}', b'{"id": +Infinity}', b'{"id": -Infinity}',
    b'{"id": NaN, "description": "", "when": "true"}', b"{'id': 'a'}", b'{"id": "a",}', b'{"id": 01}',
    b'{"id": "\x01"}', b'{"id": 1e999, "description": "", "when": "true"}', b'[{"id": "a"}]', b"{\"id\": \"a\"} // c",
    b'{"id":1,"description":"","when":"true"}',
    b'{"id":"","description":"","when":""}',
    b'{"id":"' + b"a" * 200 + b'","description":"","when":"true"}',
    b'{"id":"' + b"a" * 201 + b'","description":"","when":"true"}',
    b'{"id":"' + "\u00e9".encode() * 200 + b'","description":"","when":"true"}',
    b'{"id":"' + "\U0001F600".encode() * 201 + b'","description":"","when":"true"}',
    b'{"id":"a","description":"","when":"true","x":1}',
    b'{"x":1,"when":5,"id":"","y":null}',
    b'{"id":"a","tenant":null,"description":"","when":"true"}',
    b'{"id":"a","tenant":"","description":"","when":"true"}',
    b'{"id":"a","tenant":5,"description":null,"when":true}',
    b'{"id": 1.5, "when": [], "description": {}}',
    b'{"id":"a","description":"","when":"true", "id":"b"}',
    b'{"id":"a","description":"","when":"true"}\n',
    b'{"id":"a\\ud800","description":"","when":"true"}',
    b'{"id":"a","description":"","when":"zz > n"}',
    b'{"id":"a\\n\'b","description":"","when":"zz"}',
    b'{"id":"a\\"b\'","description":"","when":"zz"}',
    b'{"id":"\\u00e9\\u200b\\t\\u0085\\u00a0\\u2028\\ue000\\u0378","description":"","when":"zz"}',
    b'{"id":"\\ud83d\\ude00x","description":"","when":"zz"}',
    b'{"id":"a","description":"","when":"type(n) == int"}',
    b'{"id":"a","description":"","when":"[1].exists(x, x > n) && x"}',
    b'{"id":"a","description":"","when":"event.values.exists(k, k == \\"a\\") && n > 0"}',
    b'{"id":"a","description":"","when":"n.matches(\\"\\\\\\\\d\\")"}',
    b'{"id":"a","description":"","when":"{\\"a\\": 1, \\"a\\": 2}.a == 2"}',
    b'{"id":"a","description":"","when":"string(duration(\\"1h\\")) == \\"\\""}',
    b'{"id":"a","tenant":"acme","description":"d","when":"n > 1 && event.name == \\"purchase\\""}',
]



def _rule(when: str, tenant: str | None = None) -> bytes:
    rule = {"id": "a", "description": "", "when": when} | ({"tenant": tenant} if tenant is not None else {})
    return json.dumps(rule).encode()


def _literal(n: int) -> str:
    return "[" + ", ".join(str(i) for i in range(n)) + "]"


# operators/rule_limits.py at its defaults (docs/security.md): refused before compiling, or accepted.
LIMITS = [
    _rule("n > 1 && " + " " * 66_000 + ")"),  # a syntax error past column 65,535 (panics cel-rust)
    _rule(" " * 4096), _rule("n > 0" + " " * 4091), _rule("n > 0" + " " * 4092),
    _rule(f"{_literal(100)}.all(x, {_literal(100)}.all(y, {_literal(100)}.all(z, x + y + z >= 0)))"),
    _rule(f"{_literal(40)}.map(x, {_literal(40)}.map(y, {_literal(40)})).size() > 0"),
    _rule(f"{_literal(40)}.map(x, {_literal(40)}.map(y, x + y)).size() > 0"),
    _rule(f"{_literal(40)}.map(a, {_literal(40)}.map(b, {_literal(40)}.map(c, c))).size() > 0"),
    _rule("event.values.all(k, event.values.all(j, k != j || j == k))"),
    _rule("event.values.exists(k, k == 'a') && n > 0"),
    _rule("(" * 31 + "n" + ")" * 31 + " > 0"), _rule("(" * 33 + "n" + ")" * 33 + " > 0"),
    _rule("(" * 40 + "n > 0"), _rule(" + ".join(["1"] * 30) + " > n"), _rule(" + ".join(["1"] * 40) + " > n"),
    _rule(" && ".join(["n > 1"] * 40)), _rule("!" * 40 + "true"),
    _rule(" : ".join(["n > 1 ? true"] * 40) + " : false"),
    _rule(f"size({_literal(128)}) > n"), _rule(f"size({_literal(129)}) > n"),
    _rule("size({" + ", ".join(f"{i}: {i}" for i in range(129)) + "}) > n"),
    _rule("event.values.exists(k, k.matches('^a'))"), _rule("event.values.exists(k, k + 'x' == 'ax')"),
    _rule("event.values.exists(k, string(k) == 'a')"), _rule("[1].map(x, 'a' + 'b').size() == n"),
    _rule(" && ".join(["event.name.matches('^a')"] * 4)), _rule(" && ".join(["event.name.matches('^a')"] * 5)),
    _rule("matches(event.name, '^a') && n > 0"),
    _rule("[1, 2].map(x, x > 1, x * 2).size() == n"), _rule("[1].exists(x, [2].exists(y, x < y))"),
    _rule("n > 0", tenant="t" * 256), _rule("n > 0", tenant="t" * 257),
    _rule("n > 0", tenant="\u00e9" * 128), _rule("n > 0", tenant="\u00e9" * 129),
    _rule("a.b{c: 1}"), _rule("n > 0 1"), _rule("n >"), _rule(".n > 0"), _rule("n[0] > 0 && n.x"),
    _rule("has(event.values.a) ? event.values.a > 0 : false"), _rule("'a' + 'b' == 'ab'"),
]


def validation() -> None:
    catalogue = Catalogue(stats=[StatSpec(name="n", agg="count")])
    cases = []
    for raw in VALIDATION + LIMITS:
        cases.append({"raw": raw.hex(), "reason": validate_rule(raw, catalogue)})
    dump("validation.json", {"stats": list(catalogue.names), "cases": cases})


EXPRESSIONS = [
    'event.name == "purchase" && n > 1', 'n > 1 && "purchase" == event.name', 'event.name == "a" || n > 1',
    'event.name == "a"', '(event.name == "a") && n > 1', 'event.name == "a" ? true : false',
    'event.name == \'x y\' && (n > 1 || n < 0)', 'event.name == "a\\"b" && n > 1', 'event.name == "" && true',
    'event.name == "a" // comment', 'event.name == r"a" && true', 'event.name == "a" && event.name == "b"',
    'event.name=="a"&&n>1', '  event.name == "a" \n\t', 'event . name == "a" && true', 'event.name == "\u00e9" && true',
    'event.name == "\U0001F600" && 1u > 0', 'event.name == "a" && 0x1f > 1', 'event.name == "a" && 1e3 > 1',
    'event.name == "a" && .5 < 1', 'event.name == "a" && [1, 2][0] == 1', 'event.name == "a" && {"k": 1}.k == 1',
    'event.name == "a" && "b""c" == ""', 'event.name == "a" && n\u3000> 1', 'event.name == "a" && n \u0663',
    'event.name == "a"\u001f&& true', 'event.name == "a" && b"x" == b"x"', 'event.name == "a" && """x""" == "x"',
    'event.name == "a" && event.values.exists(k, k == "z")', 'event.values.all(k, k != "") && event.name == "b"',
    '[1].exists(x, x > n) && x', '[1]. exists ( x , x > 0)', '[1].map(y, y * 2).filter(z, z > 0).size() > 0',
    '[1].exists_one(q, q > 0) && [2].all(r, r > n)', 'has(event.values.x) && n > 0', 'event.values.n > n',
    'n > 0 && m > 0', 'type(n) == int', '[n].exists(n, n > 0)', '{"a": n}.a > 0', 'size(event.values) > 0',
    'event.values.matches("^\\\\d$")', 'string(event.ts) != ""', 'n.matches(r"[0-9]+") || true',
    "matches(string(n), '\\\\w')", "string(n).matches('[[:digit:]]')", "string(n).matches('\\\\\\\\d')",
    '{1: "a", 1u: "b"}[1] == "a"', '{true: 1, false: 2}[true] == 1', '{event.name: 1, "b": 2}.b == 2',
    '{event.name: 1}.purchase == 1', '{1.5: 1}.size() == 1', '{null: 1}.size() == 1', '{"a": {"a": 1}}.a.a == 1',
    'timestamp("2023-01-01T00:00:00Z") < timestamp("2024-01-01T00:00:00Z") && string(n) == "1"',
    'duration("1h") > duration("1m") && n > 0', '{0x10: 1, 16: 2}.size() == 2', "r'\\d' == '\\\\d' && n > 0",
    'n > 0 && "\\x41\\101\\u0041\\U00000041" == "AAAA"', '-n < 0', 'n > -1', '0 - n < 1', '[-1, -n][0] < 0',
    '(-1) < 0', 'n - -1 > 0', 'n - - n > 0', '-1.5 < -1u', 'x[-1]', '!-n', '-(1)', '- 1 < 0', '-"a"',
]


PIECES = [
    "event", ".", "name", "==", '"a"', "'b'", "&&", "||", "(", ")", "[", "]", "{", "}", " ", "\u3000", "\x1c", "\n",
    "\t", "1", "1.5", "u", "e3", "0x", "\u0663", "'", '"', "\\", "//", "?", ":", ",", "-", "!", "n", "x", "matches",
    "exists", "all", "map(", ".exists(", "x,", "r", "b", '"""', "\\d", "[:", "string(", "duration(", "timestamp(",
    "\u00e9", "\U0001F600", "\x85", "\xa0", "\\x41", "\\u00e9", "\\101", "1u", ": ",
]


def random_expressions(count: int) -> list[str]:
    import random

    rng = random.Random(20261127)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 14))) for _ in range(count)]


CONJUNCTS = [
    'event.name == "purchase"', '"purchase" == event.name', "event.name == 'page_view'", 'event.name=="x"',
    'event . name == "y"', 'event.name == "a b"', 'event.name == "\u00e9"', 'event.name == ""', "event.name == r'a'",
    'event.name == "a\\"b"', 'event.name != "purchase"', 'event.name == n', "n > 1", "x >= 2u", "n == 1.5e3",
    "(n > 1 || x > 1)", "has(event.values.amount)", "event.values.amount >= 1000", "[1, 2].exists(k, k > n)",
    "{'a': 1}.a == 1", "n > 1 ? true : false", "!(n > 1)", "event.values.exists(x, x == 'a')", "size(event.name) > 0",
    "event.name.startsWith('p')", "event.name in ['a', 'b']", "-1 < n", "n - -1 > 0", "true", "'\u3000' != ''",
]
SPACES = ["", " ", "  ", "\n", "\t", "\u3000", "\x1c", "\r\n", "\x0b", "\xa0"]


def structured_expressions(count: int) -> list[str]:
    import random

    rng = random.Random(7)
    out = []
    for _ in range(count):
        parts = [rng.choice(CONJUNCTS) for _ in range(rng.randint(1, 4))]
        text = parts[0]
        for part in parts[1:]:
            op = rng.choice(["&&", "&&", "&&", "||"])
            text += rng.choice(SPACES) + op + rng.choice(SPACES) + part
        if rng.random() < 0.2:
            text = "(" + text + ")"
        if rng.random() < 0.2:
            text = rng.choice(SPACES) + text + rng.choice(SPACES)
        if rng.random() < 0.1:
            text += " // " + rng.choice(CONJUNCTS)
        out.append(text)
    return out


def static() -> None:
    catalogue = Catalogue(stats=[StatSpec(name="n", agg="count"), StatSpec(name="x", agg="count")])
    cases = []
    for expression in EXPRESSIONS + structured_expressions(1500) + random_expressions(1000):
        case: dict = {
            "expr": expression,
            "guard": event_name_guard(expression),
            "bound": sorted(set(_MACRO_BINDING.findall(expression))),
            "check": check(expression),
        }
        try:
            rule = compile_rule({"id": "r", "description": "", "when": expression}, catalogue)
            case.update(stats=list(rule.stats), uses_event=rule.uses_event, reason=None)
        except RuleError as exc:  # the parser's own words are not compared: keep the fixture small
            text = str(exc)
            marker = "does not compile: "
            short = text[: text.index(marker) + len(marker)] if marker in text else text
            case.update(stats=None, uses_event=None, reason=short)
        cases.append(case)
    dump("static.json", {"stats": list(catalogue.names), "cases": cases})


RULE_LISTS = [
    [],
    [("a", "n > 1")],
    [("b", "n > 1"), ("a", 'event.name == "x" && n > 0')],
    [("\u00e9t\u00e9", 'event.name == "caf\u00e9"'), ("\U0001F600", "n == 1"), ("\ue000", "n == 2"),
     ("z\\", 'n == 3 && "\\t" != ""')],
    [("quote\"", "n > 1"), ("ctl\u0001\u007f", "n\t>\n1")],
]


def fingerprints() -> None:
    catalogue = Catalogue(stats=[StatSpec(name="n", agg="count")])
    cases = []
    for rules in RULE_LISTS:
        compiled = [compile_rule({"id": i, "description": "", "when": w}, catalogue) for i, w in rules]
        view = RuleSet(catalogue, compiled).for_tenant("t")
        cases.append({"rules": [list(r) for r in rules], "ids": list(view.ids), "fingerprint": str(view.fingerprint)})
    dump("fingerprints.json", {"stats": list(catalogue.names), "cases": cases})


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    corpus()
    validation()
    static()
    fingerprints()


if __name__ == "__main__":
    main()
