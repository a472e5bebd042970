"""Limits on what one rule may cost, checked before anything compiles it (docs/security.md).

A rule comes from a tenant (through the front) and runs on every event of that tenant, in a task
shared with every other tenant. The `cel` package (cel-rust) panics on some inputs (a syntax error
past column 65,535) and has no evaluation budget (nested comprehensions over literal lists abort
the process or take seconds), so the limits are judged here, from the text, before `cel.compile`
sees it:

- the tenant name of a rule: at most `max_tenant_bytes` of UTF-8 (the event contract's 256);
- the expression: at most `max_expression_length` code points;
- nesting: at most `max_depth` levels of the syntax tree (a parenthesised group is a level);
- list and map literals: at most `max_literal_entries` entries;
- comprehensions (`all exists exists_one map filter`): nested at most `max_comprehension_nesting`;
- `matches()`: at most `max_matches` calls; none inside a comprehension; no string building
  (`string()`, `+` with a string literal) inside a comprehension;
- a static cost estimate (below) at most `max_cost`.

Cost: 1 per node; a comprehension costs its range plus n x (its body + 1), n = the length of a
literal list (or of a `map`/`filter` of one) and `assumed_collection_size` for a range known only at
run time (the event's values, a stat); `matches()` costs `matches_cost`. It is an estimate of the
work one evaluation does, not a proof: a range from event data is bounded by the 64 KiB record
(docs/events.md), the assumed size keeps nested comprehensions over such ranges out.

The reader is a small recursive-descent parser over `rule_checks.tokens`; it never evaluates
anything. An expression it cannot read is refused after the compiler has had its say (so syntax
errors keep the compiler's message). The JVM engine runs the same algorithm with the same
messages (jvm/engine/.../RuleLimits.java): change both together.
"""

from __future__ import annotations

from dataclasses import dataclass

from operators.rule_checks import _Unreadable, tokens

_MESSAGE_LITERAL = "has a message literal (no rule can use one: there are no message types)"
COMPREHENSIONS = frozenset({"all", "exists", "exists_one", "map", "filter"})


@dataclass(frozen=True)
class RuleLimits:
    max_rules_per_tenant: int = 100  # rules naming one tenant; rules for every tenant count as one more
    max_tenant_bytes: int = 256
    max_expression_length: int = 4096
    max_depth: int = 32
    max_literal_entries: int = 128
    max_comprehension_nesting: int = 2
    max_matches: int = 4
    matches_cost: int = 50
    assumed_collection_size: int = 64
    max_cost: int = 10_000
    # Not a limit on a rule: the per-tenant rule views a RuleSet keeps (least recently used evicted).
    max_cached_tenants: int = 1024

    def __post_init__(self) -> None:
        # The reader recurses once per level: a bound keeps it far from Python's recursion limit.
        if not 1 <= self.max_depth <= 48:
            raise ValueError("max_depth must be between 1 and 48")
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"rule limit {name} must be a positive integer")


DEFAULT_LIMITS = RuleLimits()


class _Refused(Exception):
    """A limit is exceeded; the message is the reason."""


class _Node:
    __slots__ = ("cost", "depth", "size")

    def __init__(self, cost: int, depth: int, size: int | None = None) -> None:
        # size: the length of a list or map literal (or of a map/filter over one); -1: a string literal
        self.cost, self.depth, self.size = cost, depth, size


class _Reader:
    def __init__(self, toks: list[tuple[str, str]], limits: RuleLimits) -> None:
        self.toks, self.limits, self.at, self.matches = toks, limits, 0, 0

    # --- tokens ---
    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.at + offset
        return self.toks[index] if index < len(self.toks) else ("end", "")

    def is_op(self, value: str, offset: int = 0) -> bool:
        return self.peek(offset) == ("op", value)

    def expect(self, value: str) -> None:
        if not self.is_op(value):
            raise _Unreadable(f"expected {value!r}")
        self.at += 1

    # --- limits ---
    def node(self, cost: int, children: list[_Node], size: int | None = None) -> _Node:
        depth = 1 + max((c.depth for c in children), default=0)
        if depth > self.limits.max_depth:
            raise _Refused(f"is nested deeper than {self.limits.max_depth} levels")
        cost = min(cost + sum(c.cost for c in children), 1 << 62)
        if cost > self.limits.max_cost:
            raise _Refused(f"has an estimated cost above {self.limits.max_cost} (docs/security.md)")
        return _Node(cost, depth, size)

    def enter(self, level: int) -> int:
        if level + 1 > self.limits.max_depth:
            raise _Refused(f"is nested deeper than {self.limits.max_depth} levels")
        return level + 1

    # --- grammar (CEL: cel-spec/doc/langdef.md) ---
    def expr(self, level: int, loops: int) -> _Node:
        level = self.enter(level)
        condition = self.binary(0, level, loops)
        if not self.is_op("?"):
            return condition
        self.at += 1
        then = self.binary(0, level, loops)  # a conditional's middle is a ConditionalOr
        self.expect(":")
        otherwise = self.expr(level, loops)
        return self.node(1, [condition, then, otherwise])

    _LEVELS = (("||",), ("&&",), ("==", "!=", "<", "<=", ">", ">=", "in"), ("+", "-"), ("*", "/", "%"))

    def binary(self, rank: int, level: int, loops: int) -> _Node:
        if rank == len(self._LEVELS):
            return self.unary(level, loops)
        left = self.binary(rank + 1, level, loops)
        while True:
            kind, value = self.peek()
            operator = (kind == "op" and value != "in") or (kind == "name" and value == "in")
            if not operator or value not in self._LEVELS[rank]:
                return left
            self.at += 1
            right = self.binary(rank + 1, level, loops)
            if value == "+" and loops and (self.string_literal(left) or self.string_literal(right)):
                raise _Refused("builds strings inside a comprehension")
            left = self.node(1, [left, right])

    def string_literal(self, node: _Node) -> bool:
        return node.size == -1

    def unary(self, level: int, loops: int) -> _Node:
        operators = 0
        while self.is_op("!") or self.is_op("-"):
            operators += 1
            self.at += 1
        node = self.member(level, loops)
        for _ in range(operators):
            node = self.node(1, [node])
        return node

    def member(self, level: int, loops: int) -> _Node:
        node = self.primary(level, loops)
        while True:
            if self.is_op("."):
                self.at += 1
                kind, name = self.peek()
                if kind != "name":
                    raise _Unreadable("expected a field name")
                self.at += 1
                if self.is_op("("):
                    node = self.call(name, node, level, loops)
                elif self.is_op("{"):
                    raise _Refused(_MESSAGE_LITERAL)
                else:
                    node = self.node(1, [node])
            elif self.is_op("["):
                self.at += 1
                index = self.expr(level, loops)
                self.expect("]")
                node = self.node(1, [node, index])
            else:
                return node

    def call(self, name: str, target: _Node | None, level: int, loops: int) -> _Node:
        """The arguments of name(...), the '(' is next; target is the receiver of a method call."""
        self.at += 1
        comprehension = target is not None and name in COMPREHENSIONS and self.peek()[0] == "name" \
            and self.is_op(",", 1)
        if comprehension:
            assert target is not None
            if loops + 1 > self.limits.max_comprehension_nesting:
                raise _Refused(f"nests comprehensions deeper than {self.limits.max_comprehension_nesting}")
            self.at += 2  # the variable and the comma
            bodies = self.arguments(level, loops + 1)
            if not 1 <= len(bodies) <= (2 if name == "map" else 1):
                wanted = "one or two expressions" if name == "map" else "one expression"
                raise _Unreadable(f"{name}() takes a variable and {wanted}")
            n = target.size if target.size is not None and target.size >= 0 else self.limits.assumed_collection_size
            per_item = 1 + sum(body.cost for body in bodies)
            result = self.node(min(n * per_item, 1 << 62), [target],
                               target.size if name in ("map", "filter") else None)
            result.depth = max(result.depth, 1 + max(body.depth for body in bodies))
            if result.depth > self.limits.max_depth:
                raise _Refused(f"is nested deeper than {self.limits.max_depth} levels")
            return result
        args = self.arguments(level, loops)
        cost = 1
        if name == "matches":
            self.matches += 1
            if loops:
                raise _Refused("calls matches() inside a comprehension")
            if self.matches > self.limits.max_matches:
                raise _Refused(f"calls matches() more than {self.limits.max_matches} times")
            cost = self.limits.matches_cost
        if name == "string" and target is None and loops:
            raise _Refused("builds strings inside a comprehension")
        return self.node(cost, ([target] if target is not None else []) + args)

    def arguments(self, level: int, loops: int, closing: str = ")") -> list[_Node]:
        """Comma-separated expressions up to closing (consumed); a trailing comma is allowed."""
        items: list[_Node] = []
        while not self.is_op(closing):
            items.append(self.expr(level, loops))
            if not self.is_op(","):
                break
            self.at += 1
        self.expect(closing)
        return items

    def primary(self, level: int, loops: int) -> _Node:
        kind, value = self.peek()
        if kind == "op" and value == ".":  # a leading dot: the root scope
            self.at += 1
            kind, value = self.peek()
            if kind != "name":
                raise _Unreadable("expected a name after '.'")
        if kind == "name":
            self.at += 1
            if self.is_op("("):
                return self.call(value, None, level, loops)
            if self.is_op("{"):
                raise _Refused(_MESSAGE_LITERAL)
            return self.node(1, [])
        if kind in ("int", "uint", "float", "bytes"):
            self.at += 1
            return self.node(1, [])
        if kind == "string":
            self.at += 1
            return self.node(1, [], size=-1)  # size -1 marks a string literal
        if kind == "op" and value == "(":
            self.at += 1
            inner = self.expr(level, loops)
            self.expect(")")
            return self.node(1, [inner], size=inner.size)
        if kind == "op" and value == "[":
            self.at += 1
            elements = self.arguments(level, loops, "]")
            if len(elements) > self.limits.max_literal_entries:
                raise _Refused(f"has a list literal of more than {self.limits.max_literal_entries} elements")
            return self.node(1, elements, size=len(elements))
        if kind == "op" and value == "{":
            self.at += 1
            entries: list[_Node] = []
            while not self.is_op("}"):
                entries.append(self.expr(level, loops))
                self.expect(":")
                entries.append(self.expr(level, loops))
                if not self.is_op(","):
                    break
                self.at += 1
            self.expect("}")
            if len(entries) // 2 > self.limits.max_literal_entries:
                raise _Refused(f"has a map literal of more than {self.limits.max_literal_entries} entries")
            return self.node(1, entries, size=len(entries) // 2)
        raise _Unreadable(f"unexpected {value or 'end'!r}")


@dataclass(frozen=True)
class Verdict:
    """The outcome of `check`: refused (the reason) or not; unreadable: refuse if it compiles."""

    refused: str | None = None
    unreadable: str | None = None


def check(expression: str, limits: RuleLimits = DEFAULT_LIMITS) -> Verdict:
    """Judge an expression against the limits without compiling it (reasons follow "`when` ")."""
    if len(expression) > limits.max_expression_length:
        return Verdict(refused=f"is longer than {limits.max_expression_length} characters")
    try:
        toks = tokens(expression)
    except _Unreadable as exc:
        return Verdict(unreadable=str(exc))
    # Brackets first, without recursion: the reader below recurses once per level.
    depth = 0
    for kind, value in toks:
        if kind == "op" and value in "([{":
            depth += 1
            if depth > limits.max_depth:
                return Verdict(refused=f"is nested deeper than {limits.max_depth} levels")
        elif kind == "op" and value in ")]}":
            depth -= 1
    reader = _Reader(toks, limits)
    try:
        reader.expr(0, 0)
        if reader.at != len(toks):
            raise _Unreadable(f"unexpected {reader.peek()[1]!r}")
    except _Refused as exc:
        return Verdict(refused=str(exc))
    except _Unreadable as exc:
        return Verdict(unreadable=str(exc))
    return Verdict()


def check_tenant(tenant: str | None, limits: RuleLimits = DEFAULT_LIMITS) -> str | None:
    """The reason if a rule's tenant name is too long (before "rule 'id': ")."""
    if tenant is not None and len(tenant.encode("utf-8", "surrogatepass")) > limits.max_tenant_bytes:
        return f"`tenant` is longer than {limits.max_tenant_bytes} bytes UTF-8"
    return None
