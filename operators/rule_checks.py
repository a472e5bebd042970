"""Load-time checks that keep the Python engine and the JVM engine (CEL-Java) equal.

Each check refuses a construct on which the `cel` package (cel-rust) and CEL-Java give different
results and that no rule needs (jvm/engine/RULES-CONFORMANCE.md has the table):

- `matches()` with a pattern that is not a string literal, or whose pattern uses `\\d \\D \\w \\W
  \\s \\S \\b \\B` or a `[:class:]` (Unicode classes in Rust's regex, ASCII in RE2J);
- a map literal with a float, bytes or null key, with two keys that are equal (`'a'`/`'a'`,
  `1`/`1u`), or with two or more entries and a key that is not a literal;
- `string()` in a rule that also calls `duration()` or `timestamp()` (their text differs);
- a unary minus on anything but a number literal (`-x`: cel-rust wraps `-(-2^63)`, CEL-Java
  fails; `0 - x` fails in both).

The checks read the expression's tokens (a CEL lexer, below), never evaluate it. The JVM engine
runs the same algorithm (jvm/engine/.../RuleChecks.java): change both together.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""(?P<space>[\t\n\f\r ]+|//[^\n]*)
      | (?P<float>[0-9]*\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)
      | (?P<uint>(?:0[xX][0-9a-fA-F]+|[0-9]+)[uU])
      | (?P<int>0[xX][0-9a-fA-F]+|[0-9]+)
      | (?P<string>(?:[rR][bB]?|[bB][rR]?)?(?:\"\"\"|'''|"|'))
      | (?P<name>[_a-zA-Z][_a-zA-Z0-9]*)
      | (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%<>!?:.,()\[\]{}])
    """,
    re.VERBOSE,
)
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                   "\\": "\\", "'": "'", '"': '"', "`": "`", "?": "?"}
_REGEX_CLASSES = "dDwWsSbB"


class _Unreadable(Exception):
    pass


def _string_literal(expression: str, start: int, prefix_and_quote: str) -> tuple[int, str, bool]:
    """Scan the literal opening at start -> (end, decoded value, is_bytes)."""
    quote_start = start + len(prefix_and_quote.rstrip("\"'"))
    prefix = expression[start:quote_start].lower()
    raw, is_bytes = "r" in prefix, "b" in prefix
    quote = prefix_and_quote[len(prefix):]
    position = quote_start + len(quote)
    out: list[str] = []
    while True:
        if position >= len(expression):
            raise _Unreadable("unterminated string")
        if expression.startswith(quote, position):
            return position + len(quote), "".join(out), is_bytes
        char = expression[position]
        if len(quote) == 1 and char in "\r\n":
            raise _Unreadable("newline in a string")
        if char != "\\" or raw:
            out.append(char)
            position += 1
            continue
        escape = expression[position + 1:position + 2]
        if escape in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[escape])
            position += 2
        elif escape in ("x", "X", "u", "U"):
            width = {"x": 2, "X": 2, "u": 4, "U": 8}[escape]
            digits = expression[position + 2:position + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise _Unreadable("bad escape")
            if int(digits, 16) > 0x10FFFF:
                raise _Unreadable("bad escape")
            out.append(chr(int(digits, 16)))
            position += 2 + width
        elif escape in "0123" and escape:
            digits = expression[position + 1:position + 4]
            if len(digits) != 3 or not all(c in "01234567" for c in digits):
                raise _Unreadable("bad escape")
            out.append(chr(int(digits, 8)))
            position += 4
        else:
            raise _Unreadable("bad escape")


def tokens(expression: str) -> list[tuple[str, str]]:
    """(kind, value) of each token; kind: name int uint float string bytes op; strings decoded."""
    out: list[tuple[str, str]] = []
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise _Unreadable(f"unexpected {expression[position]!r}")
        kind = match.lastgroup or ""
        if kind == "space":
            position = match.end()
        elif kind == "string":
            position, value, is_bytes = _string_literal(expression, position, match[kind])
            out.append(("bytes" if is_bytes else "string", value))
        else:
            out.append((kind, match[kind]))
            position = match.end()
    return out


def _closing(toks: list[tuple[str, str]], opening: int) -> int:
    """Index of the bracket closing toks[opening] (len(toks) if none)."""
    depth = 0
    for index in range(opening, len(toks)):
        kind, value = toks[index]
        if kind == "op" and value in ("(", "[", "{"):
            depth += 1
        elif kind == "op" and value in (")", "]", "}"):
            depth -= 1
            if depth == 0:
                return index
    return len(toks)


def _split(toks: list[tuple[str, str]], separator: str) -> list[list[tuple[str, str]]]:
    """Split at separators outside brackets."""
    parts: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for token in toks:
        kind, value = token
        if kind == "op" and value in ("(", "[", "{"):
            depth += 1
        elif kind == "op" and value in (")", "]", "}"):
            depth -= 1
        elif kind == "op" and value == separator and depth == 0:
            parts.append([])
            continue
        parts[-1].append(token)
    return parts


def _pattern_problem(pattern: str) -> str | None:
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "\\" and position + 1 < len(pattern):
            if pattern[position + 1] in _REGEX_CLASSES:
                return f"\\{pattern[position + 1]}"
            position += 2
            continue
        if char == "[" and pattern.startswith("[:", position):
            return "[:class:]"
        position += 1
    return None


def _key(token: tuple[str, str]) -> str | None:
    """The identity of a literal map key (1 and 1u are the same key), None if not a literal."""
    kind, value = token
    if kind == "string":
        return "s" + value
    if kind in ("int", "uint"):
        digits = value.rstrip("uU")
        return "n" + str(int(digits, 16) if digits[:2] in ("0x", "0X") else int(digits))
    if kind == "name" and value in ("true", "false"):
        return "b" + value
    return None


def check(expression: str) -> str | None:
    """None if the expression passes, else the reason (appended to "rule 'id': `when` ")."""
    try:
        toks = tokens(expression)
    except _Unreadable as exc:
        return f"cannot be read by the conformance checks: {exc}"
    calls = {value for index, (kind, value) in enumerate(toks[:-1])
             if kind == "name" and toks[index + 1] == ("op", "(")}
    if "string" in calls and calls & {"duration", "timestamp"}:
        return ("calls string() in a rule that calls duration() or timestamp(): "
                "the text of a duration or timestamp differs between the engines")
    for index, (kind, value) in enumerate(toks):
        if kind == "name" and value == "matches" and toks[index + 1:index + 2] == [("op", "(")]:
            receiver = index > 0 and toks[index - 1] == ("op", ".")
            args = _split(toks[index + 2:_closing(toks, index + 1)], ",")
            pattern = args[0] if receiver else args[-1]
            if len(pattern) != 1 or pattern[0][0] != "string":
                return "calls matches() with a pattern that is not a string literal"
            problem = _pattern_problem(pattern[0][1])
            if problem is not None:
                return (f"calls matches() with a pattern that uses {problem}: write an explicit class "
                        "such as [0-9] (\\d \\D \\w \\W \\s \\S \\b \\B and [:class:] differ between the engines)")
        if kind == "op" and value == "-":
            unary = index == 0 or (toks[index - 1][0] == "op" and toks[index - 1][1] not in (")", "]", "}"))
            operand = toks[index + 1][0] if index + 1 < len(toks) else ""
            if unary and operand not in ("int", "uint", "float"):
                return ("negates something that is not a number literal: write 0 - x "
                        "(cel-rust wraps -x for the smallest int instead of failing)")
        if kind == "op" and value == "{":
            entries = [e for e in _split(toks[index + 1:_closing(toks, index)], ",") if e]
            seen: set[str] = set()
            for entry in entries:
                key_tokens = _split(entry, ":")[0]
                literal = key_tokens[0] if len(key_tokens) == 1 else ("", "")
                if literal[0] in ("float", "bytes") or literal == ("name", "null"):
                    return "has a map literal with a float, bytes or null key"
                key = _key(key_tokens[0]) if len(key_tokens) == 1 else None
                if key is None:
                    if len(entries) > 1:
                        return "has a map literal with two or more entries and a key that is not a literal"
                    continue
                if key in seen:
                    return "has a map literal with a repeated key"
                seen.add(key)
    return None
