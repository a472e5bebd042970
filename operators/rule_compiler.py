"""The common subset of CEL rule expressions, compiled to Python functions that give exactly what
the cel package gives.

Why: with cel every evaluation converts its variables to CEL values first (0.3-3 µs each) and an
execute costs 1-2 µs; compiled rules read the stat values directly, all of a tenant's rules in one
Python function, at a fraction of a microsecond each.

The subset: literals (int, double, strings without escapes, bool, null), stat names, event.name,
event.ts, event.values.KEY, event.values["KEY"], has(event.values.KEY), "KEY" in event.values,
unary ! and -, * / % + -, < <= > >= == !=, && ||, ?: and parentheses.
Anything else (function calls, macros, lists, maps, uint, escapes, ...) has no Python source and
the rule runs on cel. A value the two could read differently (an event int beyond 64 bits) raises
Fallback, and that evaluation runs on cel.

Semantics are those of the cel package as shipped (tests/operators/test_rules.py compares both on
random expressions): an error is the value ERR, && is false if either side is false and || true if
either side is true (whatever the other side is), ints are 64-bit with overflow an error, int and
double compare (as doubles) but never mix in arithmetic, == between other types is false.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from math import copysign, inf, nan

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# (run mask, stat values by name, event) -> (matched mask, error mask, mask of rules left to cel)
BatchEvaluation = Callable[[int, dict, object], tuple[int, int, int]]


class _Error:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ERR"


ERR = _Error()  # the result of a failed operation; never True, so "not matched"


class Fallback(Exception):
    """This evaluation must run on cel (a value the subset does not model)."""


class Unsupported(Exception):
    """The expression is outside the subset."""


# --- run-time helpers (names used by the generated code) ---------------------------------------------


def _not(a: object) -> object:
    return (not a) if type(a) is bool else ERR


def _ordered(a: object, b: object) -> tuple | None:
    """The operands as < compares them (int against double as doubles), or None if they do not order."""
    ta, tb = type(a), type(b)
    if ta is tb:
        if ta is int or ta is str or ta is bool:
            return a, b
        if ta is float and a == a and b == b:  # NaN orders nothing: an error in cel
            return a, b
        return None
    if ta is int and tb is float and b == b:
        return float(a), b  # type: ignore[arg-type]
    if ta is float and tb is int and a == a:
        return a, float(b)  # type: ignore[arg-type]
    return None


def _lt(a: object, b: object) -> object:
    pair = _ordered(a, b)
    return ERR if pair is None else pair[0] < pair[1]


def _le(a: object, b: object) -> object:
    pair = _ordered(a, b)
    return ERR if pair is None else pair[0] <= pair[1]


def _gt(a: object, b: object) -> object:
    pair = _ordered(a, b)
    return ERR if pair is None else pair[0] > pair[1]


def _ge(a: object, b: object) -> object:
    pair = _ordered(a, b)
    return ERR if pair is None else pair[0] >= pair[1]


def _eq(a: object, b: object) -> object:
    ta, tb = type(a), type(b)
    if ta is _Error or tb is _Error:
        return ERR
    if ta is tb:
        return a == b
    if ta is int and tb is float:
        return float(a) == b  # type: ignore[arg-type]
    if ta is float and tb is int:
        return a == float(b)  # type: ignore[arg-type]
    return False


def _ne(a: object, b: object) -> object:
    equal = _eq(a, b)
    return equal if equal is ERR else not equal


def _int(result: int) -> object:
    return result if INT64_MIN <= result <= INT64_MAX else ERR


def _add(a: object, b: object) -> object:
    ta = type(a)
    if ta is not type(b):
        return ERR
    if ta is int:
        return _int(a + b)  # type: ignore[operator]
    if ta is float or ta is str:
        return a + b  # type: ignore[operator]
    return ERR


def _sub(a: object, b: object) -> object:
    ta = type(a)
    if ta is not type(b):
        return ERR
    if ta is int:
        return _int(a - b)  # type: ignore[operator]
    if ta is float:
        return a - b  # type: ignore[operator]
    return ERR


def _mul(a: object, b: object) -> object:
    ta = type(a)
    if ta is not type(b):
        return ERR
    if ta is int:
        return _int(a * b)  # type: ignore[operator]
    if ta is float:
        return a * b  # type: ignore[operator]
    return ERR


def _div(a: object, b: object) -> object:
    ta = type(a)
    if ta is not type(b):
        return ERR
    if ta is int:
        if b == 0:
            return ERR
        quotient = abs(a) // abs(b)  # type: ignore[arg-type]
        return _int(quotient if (a < 0) == (b < 0) else -quotient)  # type: ignore[operator]  # truncates
    if ta is float:
        if b != 0.0:
            return a / b  # type: ignore[operator]
        if a != a or a == 0.0:
            return nan
        return copysign(inf, a) * copysign(1.0, b)  # type: ignore[arg-type]  # IEEE: x / ±0
    return ERR


def _mod(a: object, b: object) -> object:
    if type(a) is not int or type(b) is not int:
        return ERR  # double % double is an error in cel too
    if b == 0 or (a == INT64_MIN and b == -1):
        return ERR
    remainder = abs(a) % abs(b)  # type: ignore[arg-type]
    return -remainder if a < 0 else remainder  # type: ignore[operator]  # sign of the dividend


def _neg(a: object) -> object:
    ta = type(a)
    if ta is int:
        return a if a == INT64_MIN else -a  # type: ignore[operator]  # cel wraps the one overflow
    if ta is float:
        return -a  # type: ignore[operator]
    if ta is bool:
        return not a  # cel's unary minus negates a bool
    return ERR


def _value(values: dict, key: str) -> object:
    value = values.get(key, ERR)  # a missing key is an error
    if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
        raise Fallback  # cel reads it as a uint or a double
    return value


# What generated code may call.
_HELPERS = {
    "ERR": ERR, "_not": _not, "_lt": _lt, "_le": _le, "_gt": _gt, "_ge": _ge,
    "_eq": _eq, "_ne": _ne, "_add": _add, "_sub": _sub, "_mul": _mul, "_div": _div, "_mod": _mod,
    "_neg": _neg, "_value": _value,
}  # fmt: skip

# --- parsing -----------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>(?:\d+\.\d+|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)
      | (?P<string>"[^"\\\n]*"|'[^'\\\n]*')
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>//|&&|\|\||==|!=|<=|>=|[-+*/%<>!?:.()\[\]{},])
    )""",
    re.VERBOSE,
)
_ATOMS = ("number", "string", "name")
_RELATIONS = {"<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge", "==": "_eq", "!=": "_ne"}
_ADDITIVE = {"+": "_add", "-": "_sub"}
_MULTIPLICATIVE = {"*": "_mul", "/": "_div", "%": "_mod"}
_EVENT_VALUES = ("event_values",)  # `event.values` itself: only valid as the right side of `in`


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens, position, end = [], 0, len(expression.rstrip())
    while position < end:
        match = _TOKEN.match(expression, position)
        if match is None:
            raise Unsupported(expression[position:])
        kind = match.lastgroup or ""
        if match[kind] == "//":
            raise Unsupported("a comment")
        # `1u`, `0x1f`, `r"..."`, `"a""b"`, `"""..."""`: atoms glued together are outside the subset
        glued = match.start(kind) == position and tokens and tokens[-1][0] in _ATOMS
        if glued and kind in _ATOMS:
            raise Unsupported("adjacent tokens")
        tokens.append((kind, match[kind]))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over CEL's precedence: ?: < || < && < relations < + - < * / % < unary < member."""

    def __init__(self, expression: str, stat_names: Collection[str]) -> None:
        self.tokens = _tokens(expression)
        self.position = 0
        self.stat_names = stat_names

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.position] if self.position < len(self.tokens) else ("end", "")

    def take(self, text: str | None = None, kind: str | None = None) -> str:
        token_kind, token_text = self.peek()
        wrong = (text is not None and token_text != text) or (kind is not None and token_kind != kind)
        if wrong or token_kind == "end":
            raise Unsupported(f"expected {text or kind}, got {token_text!r}")
        self.position += 1
        return token_text

    def parse(self) -> tuple:
        tree = self.conditional()
        if self.peek()[0] != "end":
            raise Unsupported(f"unexpected {self.peek()[1]!r}")
        return tree

    def conditional(self) -> tuple:
        condition = self.disjunction()
        if self.peek() == ("op", "?"):
            self.take("?")
            then = self.conditional()
            self.take(":")
            return ("cond", condition, then, self.conditional())
        return condition

    def disjunction(self) -> tuple:
        tree = self.conjunction()
        while self.peek() == ("op", "||"):
            self.take()
            tree = ("or", tree, self.conjunction())
        return tree

    def conjunction(self) -> tuple:
        tree = self.relation()
        while self.peek() == ("op", "&&"):
            self.take()
            tree = ("and", tree, self.relation())
        return tree

    def relation(self) -> tuple:
        tree = self.additive()
        while True:
            kind, text = self.peek()
            if kind == "op" and text in _RELATIONS:
                self.take()
                tree = ("call", _RELATIONS[text], tree, self.additive())
            elif (kind, text) == ("name", "in"):
                self.take()
                right = self.additive()
                if right != _EVENT_VALUES or tree[0] != "literal" or type(tree[1]) is not str:
                    raise Unsupported("`in` other than \"KEY\" in event.values")
                tree = ("has_value", tree[1])
            else:
                return tree

    def additive(self) -> tuple:
        tree = self.multiplicative()
        while self.peek()[0] == "op" and self.peek()[1] in _ADDITIVE:
            tree = ("call", _ADDITIVE[self.take()], tree, self.multiplicative())
        return tree

    def multiplicative(self) -> tuple:
        tree = self.unary()
        while self.peek()[0] == "op" and self.peek()[1] in _MULTIPLICATIVE:
            tree = ("call", _MULTIPLICATIVE[self.take()], tree, self.unary())
        return tree

    def unary(self) -> tuple:
        if self.peek() == ("op", "!"):
            self.take()
            return ("call", "_not", self.unary())
        if self.peek() == ("op", "-"):
            self.take()
            if self.peek()[0] == "number":  # a negative literal: -9223372036854775808 is an int
                return self.literal(negative=True)
            return ("call", "_neg", self.unary())
        return self.member()

    def member(self) -> tuple:
        kind, text = self.peek()
        if kind == "number":
            return self.literal()
        if kind == "string":
            self.take()
            return ("literal", text[1:-1])
        if (kind, text) == ("op", "("):
            self.take()
            tree = self.conditional()
            self.take(")")
            return self.no_member_after(tree)
        if kind != "name":
            raise Unsupported(f"unexpected {text!r}")
        self.take()
        if text in ("true", "false", "null"):
            return self.no_member_after(("literal", {"true": True, "false": False, "null": None}[text]))
        if text == "has" and self.peek() == ("op", "("):
            self.take("(")
            self.event_values_prefix()
            self.take(".")
            key = self.take(kind="name")
            self.take(")")
            return self.no_member_after(("has_value", key))
        if text == "event":
            return self.no_member_after(self.event_member())
        if text in self.stat_names and self.peek() != ("op", "("):
            return self.no_member_after(("stat", text))
        raise Unsupported(f"name or call {text!r}")

    def event_member(self) -> tuple:
        self.take(".")
        field = self.take(kind="name")
        if field == "name":
            return ("event_name",)
        if field == "ts":
            return ("event_ts",)
        if field != "values":
            raise Unsupported(f"event.{field}")
        if self.peek() == ("op", "."):
            self.take()
            return ("event_value", self.take(kind="name"))
        if self.peek() == ("op", "["):
            self.take()
            key = self.take(kind="string")[1:-1]
            self.take("]")
            return ("event_value", key)
        return _EVENT_VALUES

    def event_values_prefix(self) -> None:
        self.take("event")
        self.take(".")
        self.take("values")

    def no_member_after(self, tree: tuple) -> tuple:
        if self.peek() in (("op", "."), ("op", "["), ("op", "(")):
            raise Unsupported("member access on a scalar")
        return tree

    def literal(self, negative: bool = False) -> tuple:
        text = self.take(kind="number")
        value: int | float = float(text) if any(c in text for c in ".eE") else int(text)
        if negative:
            value = -value
        if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
            raise Unsupported("int literal beyond 64 bits")
        return self.no_member_after(("literal", value))


# --- event-name guards --------------------------------------------------------------------------------
# `event.name == "purchase" && <rest>` is false on every other event, whatever <rest> does (CEL's &&
# is false as soon as one side is false, even if the other errors). Spotting that shape, for any rule
# (in the subset or not), lets the evaluator skip the rule on other events.


def event_name_guard(expression: str) -> str | None:
    """L if the expression is a top-level conjunction with a conjunct `event.name == L` (or L == ...)."""
    try:
        tokens = _tokens(expression)
    except Unsupported:
        return None
    conjuncts: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for token in tokens:
        if token[0] == "op":
            depth += token[1] in "([{"
            depth -= token[1] in ")]}"
            if depth == 0 and token[1] in ("||", "?"):
                return None
            if depth == 0 and token[1] == "&&":
                conjuncts.append([])
                continue
        conjuncts[-1].append(token)
    name_ref, equals = [("name", "event"), ("op", "."), ("name", "name")], ("op", "==")
    for conjunct in conjuncts:
        if len(conjunct) != 5:
            continue
        if conjunct[:3] == name_ref and conjunct[3] == equals and conjunct[4][0] == "string":
            return conjunct[4][1][1:-1]
        if conjunct[2:] == name_ref and conjunct[1] == equals and conjunct[0][0] == "string":
            return conjunct[0][1][1:-1]
    return None


# --- code generation ---------------------------------------------------------------------------------


class _CodeGen:
    def __init__(self) -> None:
        self.temporaries = 0

    def temporary(self) -> str:
        self.temporaries += 1
        return f"_t{self.temporaries}"

    def emit(self, tree: tuple) -> str:
        kind = tree[0]
        if kind == "literal":
            return repr(tree[1])
        if kind == "stat":
            return f"s[{tree[1]!r}]"
        if kind == "event_name":
            return "e.name"
        if kind == "event_ts":
            return "e.ts"
        if kind == "event_value":
            return f"_value(e.values, {tree[1]!r})"
        if kind == "has_value":
            return f"({tree[1]!r} in e.values)"
        if kind == "call":
            if tree[1] in _PYTHON_RELATIONS and "literal" in (tree[2][0], tree[3][0]):
                return self.emit_literal_relation(*tree[1:])
            return f"{tree[1]}({', '.join(self.emit(arg) for arg in tree[2:])})"
        if kind == "and":  # false if either side is false, true if both are true, else an error
            a, b = self.temporary(), self.temporary()
            left, right = self.emit(tree[1]), self.emit(tree[2])
            return (
                f"(False if ({a} := {left}) is False else (False if ({b} := {right}) is False "
                f"else (True if {a} is True and {b} is True else ERR)))"
            )
        if kind == "or":  # true if either side is true, false if both are false, else an error
            a, b = self.temporary(), self.temporary()
            left, right = self.emit(tree[1]), self.emit(tree[2])
            return (
                f"(True if ({a} := {left}) is True else (True if ({b} := {right}) is True "
                f"else (False if {a} is False and {b} is False else ERR)))"
            )
        if kind == "cond":
            t = self.temporary()
            return (
                f"({self.emit(tree[2])} if ({t} := {self.emit(tree[1])}) is True "
                f"else ({self.emit(tree[3])} if {t} is False else ERR))"
            )
        raise Unsupported(f"{kind} outside `in`")  # event.values used as a value


    def emit_literal_relation(self, helper: str, left: tuple, right: tuple) -> str:
        """`x > 5000` and the like, the bulk of segment rules: compare natively when the other side has
        the literal's type (and is not NaN), else let the helper decide."""
        flipped = right[0] != "literal"
        literal, other = (left[1], right) if flipped else (right[1], left)
        t = self.temporary()
        value = f"({t} := {self.emit(other)})"
        text = repr(literal)
        generic = f"{helper}({text}, {t})" if flipped else f"{helper}({t}, {text})"
        if literal is None and helper in ("_eq", "_ne"):
            equal, unequal = ("True", "False") if helper == "_eq" else ("False", "True")
            return f"({equal} if {value} is None else (ERR if {t} is ERR else {unequal}))"
        operator = _PYTHON_RELATIONS[helper]
        native = f"{text} {operator} {t}" if flipped else f"{t} {operator} {text}"
        if type(literal) is float:
            return f"({native} if type{value} is float and {t} == {t} else {generic})"
        if type(literal) in (int, str, bool):
            return f"({native} if type{value} is {type(literal).__name__} else {generic})"
        return f"{helper}({text}, {value})" if flipped else f"{helper}({value}, {text})"


_PYTHON_RELATIONS = {"_lt": "<", "_le": "<=", "_gt": ">", "_ge": ">=", "_eq": "==", "_ne": "!="}


def python_source(expression: str, stat_names: Collection[str]) -> str | None:
    """The expression (already accepted by cel) as Python source reading `s` (the stat values by
    name) and `e` (the event); None if it is outside the subset."""
    try:
        return _CodeGen().emit(_Parser(expression, stat_names).parse())
    except Unsupported:
        return None


def compile_batch(sources: Sequence[str | None]) -> BatchEvaluation:
    """One function running any of rules 0..n-1 (rule k is bit k): (run mask, stat values, event) ->
    (matched, errors, on_cel), on_cel being the rules of `run` that cel must evaluate (outside the
    subset, or a Fallback). One function for all rules: no per-rule call or loop bookkeeping."""
    cel_mask = sum(1 << k for k, source in enumerate(sources) if source is None)
    lines = ["def batch(run, s, e):", f"    on_cel = run & {cel_mask}", "    matched = errors = 0"]
    for k, source in enumerate(sources):
        if source is not None:
            bit = 1 << k
            lines += [
                f"    if run & {bit}:",
                "        try:",
                f"            r = {source}",
                "        except Exception:  # Fallback, or anything the subset did not foresee: cel decides",
                f"            on_cel |= {bit}",
                "        else:",
                "            if r is True:",
                f"                matched |= {bit}",
                "            elif r is not False:",
                f"                errors |= {bit}",
            ]
    lines.append("    return matched, errors, on_cel")
    namespace = dict(_HELPERS)
    exec(compile("\n".join(lines), "<rules>", "exec"), namespace)  # noqa: S102 - source built from parsed rules
    return namespace["batch"]
