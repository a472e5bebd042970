"""Static reading of rule expressions, without evaluating them.

`event_name_guard` finds rules of the form `event.name == "x" && ...`: false on any other event
name, so the evaluator skips them there. Rules themselves are only ever evaluated by the `cel`
package; nothing here turns an expression into code.
"""

from __future__ import annotations

import re


class Unsupported(Exception):
    """The expression uses syntax this scanner does not read (the rule simply gets no guard)."""


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


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position, end = 0, len(expression.rstrip())
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
