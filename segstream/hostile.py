"""A seeded corpus of hostile records (issue 10, "Bad input"): for tests/integration/test_hostile_input.py,
tests/operators/test_hostile_corpus.py and any fuzz or property test.

Each event class makes records that break the event contract (docs/events.md) in one way; its
`reason` is a regular expression the dead-letter reason must match in full (the exact reason is the
Python contract's, operators.events.parse_record: the tests compare both engines to it). The class
`odd_valid` holds records that look hostile but keep the contract (a `-0` ts, non-UTF-8 record
keys, nesting just within the limit, fields exactly at their caps...): they must be evaluated like
any other event. Rule classes make records for the `rules` topic: every one is refused (a dead
letter `rule: ...`) except the tombstones of unknown rule ids, which change nothing.

Every record comes with a record key (often hostile too: none, empty, not UTF-8) and a timestamp.

Not in the corpus, because the two engines still give different reasons for them (found while
writing it; see the hostile-input branch's report): malformed literals (`tru`, `nul`, `{"a":tru}`),
numbers cut short (`1.`, `1e`, a lone `-`), a top-level string with a bad escape or no end
(`"\\x"`, `"abc`), a bad `\\u` escape (`"\\u12"`), a control byte or letter alone at the top level
(`\\x00`, `x`), bare words (`hello world`), lower-case `inf`/`nan`, most trailing characters after
a complete record (`]`, `,`, `1`, `{}`, `xyz`: all but one letter, the byte offset differs), a
record followed by `}` (Python: the missing fields; JVM: trailing characters). Both engines
dead-letter all of them; only the reason text differs. Rule reasons from the JSON parser and the
CEL compiler differ by implementation (Python's json and cel, Jackson and CEL-Java): the tests
compare only their prefix.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from operators.events import MAX_DEPTH, MAX_FIELD_BYTES, MAX_RECORD_BYTES, MAX_TS, MAX_USER_ID_BYTES, TOMBSTONE

# What Java's ParseEvents and the Python job say of a rule record without a key (there is no
# Python contract function for it: RuleSet.apply_change takes the key as a str).
RULE_NO_KEY = "rule record has no key (the rule id)"


@dataclass(frozen=True)
class HostileRecord:
    kind: str
    key: bytes | None
    value: bytes | None
    timestamp: int


@dataclass(frozen=True)
class HostileClass:
    name: str
    # A regular expression the reason must match in full; None: a valid record (odd_valid), or a rule
    # record that is applied without a dead letter.
    reason: str | None
    make: Callable[[random.Random, int], tuple[bytes | None, bytes | None]]  # (key, value)


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _good(i: int, **fields: object) -> dict:
    return {"event_id": f"hostile-{i}", "user_id": f"hu{i}", "ts": 1_700_000_000_000, "name": "page_view",
            "values": {"path": "/"}, **fields}


def _head(i: int) -> bytes:
    """A valid record's first fields, its object left open."""
    return _json(_good(i))[:-1]


def _with(i: int, tail: bytes) -> bytes:
    return _head(i) + b"," + tail + b"}"


def _key(rng: random.Random, i: int) -> bytes | None:
    """A record key: mostly the user id, else none, empty, not UTF-8, or binary."""
    roll = rng.random()
    if roll < 0.6:
        return f"hu{i}".encode()
    if roll < 0.7:
        return None
    if roll < 0.8:
        return b""
    if roll < 0.9:
        return b"\xff\xfe" + rng.randbytes(rng.randint(1, 16)) + b"\xc0\xaf"
    return rng.randbytes(rng.randint(1, 64))


def _keyed(make: Callable[[random.Random, int], bytes | None]) -> Callable[[random.Random, int], tuple]:
    def keyed(rng: random.Random, i: int) -> tuple[bytes | None, bytes | None]:
        value = make(rng, i)
        return _key(rng, i), value
    return keyed


# --- event classes ---------------------------------------------------------------------------------------

_NOT_JSON = [b"{not json", b"<event id='1'/>", b"{'a': 1}", b"{\"a\":1", b"{\"a\" 1}", b"{\"a\":1,}", b"[1,]x",
             b"{,}", b"}", b"]", b"@", b".5", b"01", b"{\"event_id\":\"e\",}", b"{\"a\":.5}", b"{\"a\":01}", b"+1",
             b"-x", b"{\"a\":-}"]


def _not_json(rng: random.Random, i: int) -> bytes:
    roll = rng.randrange(4)
    if roll == 0:
        return rng.choice(_NOT_JSON)
    full = _json(_good(i))
    if roll == 1:  # cut short inside a string, or before the last brace: truncated
        return full[:rng.randint(14, full.index(b'","user_id"'))] if rng.random() < 0.5 else full[:-1]
    if roll == 2:  # trailing garbage after a valid record
        return full + b"x"
    return b"{" + _json(f"k{i}") + b":" + rng.choice([b"}", b",}", b"1 2}", b"[}"])


_BAD_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xc3", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xed\xa0\x80",
             b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xc3\x28", b"\xe2\x82"]


def _invalid_utf8(rng: random.Random, i: int) -> bytes:
    bad = rng.choice(_BAD_UTF8)
    where = rng.randrange(5)
    if where == 0:
        return _json(_good(i)).replace(f"hostile-{i}".encode(), b"hostile-" + bad + str(i).encode())
    if where == 1:
        return _json(_good(i)).replace(f'"hu{i}"'.encode(), b'"hu' + bad + str(i).encode() + b'"')
    if where == 2:
        return _with(i, b'"values":{"s":"x' + bad + b'"}')
    if where == 3:
        return _with(i, b'"properties":{"note":"' + bad + b'"}')
    return _with(i, b'"k' + bad + b'":1')


def _surrogate(rng: random.Random, i: int) -> bytes:
    escape = rng.choice([b"\\ud800", b"\\udbff", b"\\udc00", b"\\udfff", b"\\ud800\\ud800", b"\\ud800\\u0041",
                         b"\\udc00\\ud800"])
    after = rng.choice([b"", b"x", b"abcdef", b"\\n", b"\\n\\t\\r"])
    text = escape + after
    where = rng.randrange(6)
    if where == 0:
        return b'{"event_id":"e' + text + b'","user_id":"hu' + str(i).encode() + b'","ts":1,"name":"n"}'
    if where == 1:
        return b'{"name":"n","event_id":"e1","ts":1,"user_id":"hu' + text + b'"}'
    if where == 2:
        return _with(i, b'"values":{"s":"' + text + b'","t":1}')
    if where == 3:
        return _with(i, b'"values":{"' + text + b'":1}')
    if where == 4:
        return _with(i, b'"properties":{"s":"' + text + b'","more":[1,2,3]}')
    return b'{"' + text + b'":1,' + _json(_good(i))[1:]


def _deep(rng: random.Random, i: int) -> bytes:
    roll = rng.randrange(5)
    if roll == 0:
        return b"[" * rng.randint(MAX_RECORD_BYTES + 1, 100_000)  # over the size limit first
    if roll == 1:
        n = rng.randint(MAX_DEPTH, 30_000)  # with the record's object: deeper than MAX_DEPTH
        return _with(i, b'"properties":' + b"[" * n + b"]" * n)
    if roll == 2:
        n = rng.randint(MAX_DEPTH, 10_000)
        return _with(i, b'"properties":' + b'{"a":' * n + b"1" + b"}" * n)
    if roll == 3:
        n = rng.randint(MAX_DEPTH, 30_000)  # never closed
        return _with(i, b'"properties":' + b"[" * n)
    n = rng.randint(1_000, 30_000)
    return b"[" * n + b"]" * n  # an array at the top: refused before its depth matters


def _ts_out_of_range(rng: random.Random, i: int) -> bytes:
    ts = rng.choice([MAX_TS + 1, MAX_TS + rng.randint(2, 10**6), 2**63 - 1, 2**63, 2**64, 10**30, -1,
                     -rng.randint(2, 10**12), -(2**63), -(2**63) - 1, -(10**30)])
    if rng.random() < 0.1:
        digits = rng.randint(4_301, 6_000)  # beyond what msgspec reads as an int
        return _json(_good(i))[:-1].replace(b'"ts":1700000000000', b'"ts":' + b"9" * digits) + b"}"
    return _json(_good(i, ts=ts))


def _ts_wrong_type(rng: random.Random, i: int) -> bytes:
    literal = rng.choice([b"1.5", b"1.0", b"1e3", b"-0.0", b"0.0", b"1E+2", b'"1700000000000"', b'""', b"true",
                          b"false", b"null", b"[]", b"[1]", b"{}", b'{"ms":1}', b"1e999", b"-1e999", b"1e400"])
    return _json(_good(i))[:-1].replace(b'"ts":1700000000000', b'"ts":' + literal) + b"}"


def _numbers(rng: random.Random, i: int) -> bytes:
    literal = rng.choice([b"1e999", b"-1e999", b"1e400", b"-2e308", b"9" * rng.randint(4_301, 6_000),
                          b"-" + b"9" * rng.randint(4_300, 6_000)])
    return _with(i, b'"values":{"amount":' + literal + b"}")


def _non_finite(rng: random.Random, i: int) -> bytes:
    literal = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"-NaN"])
    if rng.random() < 0.5:
        return _json(_good(i))[:-1].replace(b'"ts":1700000000000', b'"ts":' + literal) + b"}"
    return _with(i, b'"values":{"amount":' + literal + b"}")


def _oversized_field(rng: random.Random, i: int) -> bytes:
    field = rng.choice(["event_id", "tenant", "name", "user_id"])
    cap = MAX_USER_ID_BYTES if field == "user_id" else MAX_FIELD_BYTES
    unit = rng.choice(["x", "é", "漢", "😀", "_", "%"])
    length = rng.randint(cap // len(unit.encode()) + 1, 4_000)
    return _json(_good(i, **{field: unit * length}))


_WRONG = {"int": 7, "float": 1.5, "bool": True, "null": None, "list": ["a"], "object": {"a": 1}, "str": "x"}


def _wrong_type(rng: random.Random, i: int) -> bytes:
    field = rng.choice(["event_id", "user_id", "name", "tenant", "values", "values[...]", "document"])
    if field == "document":
        return _json(rng.choice([1, 1.5, True, None, "x", [1], []]))
    if field == "values[...]":
        return _json(_good(i, values={"a": rng.choice([["x"], {"b": 1}, []])}))
    wanted = "object" if field == "values" else "str"
    kind = rng.choice([k for k in _WRONG if k != wanted])
    return _json(_good(i, **{field: _WRONG[kind]}))


def _missing_or_empty(rng: random.Random, i: int) -> bytes:
    good = _good(i)
    field = rng.choice(["event_id", "user_id", "ts", "name"])
    if rng.random() < 0.5:
        del good[field]
        return _json(good)
    return _json({**good, "tenant": ""} if field == "ts" else {**good, field: ""})  # ts cannot be empty: tenant


def _duplicate_keys(rng: random.Random, i: int) -> bytes:
    tail = rng.choice([b'"ts":"x"', b'"user_id":""', b'"ts":-5', b'"event_id":7', b'"values":[]', b'"name":null',
                       b'"tenant":""'])
    return _with(i, tail)  # the later value wins, and breaks the contract


def _oversized_record(rng: random.Random, i: int) -> bytes:
    size = rng.randint(MAX_RECORD_BYTES + 1, MAX_RECORD_BYTES + 8 * 1024)
    value = _json(_good(i, values={"blob": ""}))
    return value.replace(b'"blob":""', b'"blob":"' + b"x" * (size - len(value)) + b'"')


def _bom(rng: random.Random, i: int) -> bytes:
    return rng.choice([b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xfe\xff", b"\xff\xfe"]) + _json(_good(i))


def _empty(rng: random.Random, i: int) -> bytes:
    return rng.choice([b"", b" ", b"\n", b"\t\r\n ", b"\xef\xbb\xbf"])


def _control(rng: random.Random, i: int) -> bytes:
    byte = bytes([rng.choice([*range(0, 32)])])
    return _json(_good(i)).replace(f"hostile-{i}".encode(), b"hostile" + byte + str(i).encode())


def _tombstone(rng: random.Random, i: int) -> bytes | None:
    return None


def _giant(rng: random.Random, i: int) -> bytes:
    """Over 1 MiB: its dead letter keeps only the first 384 KiB (jvm/job DeadLetters.java)."""
    size = rng.randint(GIANT_BYTES, GIANT_BYTES + 64 * 1024)
    value = _json(_good(i, values={"blob": ""}))
    return value.replace(b'"blob":""', b'"blob":"' + rng.randbytes(16).hex().encode() * (size // 32) + b'"')


GIANT_BYTES = 1024 * 1024 + 1


def _odd_valid(rng: random.Random, i: int) -> bytes:
    """Records that keep the contract however they look."""
    good = _good(i)
    roll = rng.randrange(10)
    if roll == 0:
        return _json(good)[:-1].replace(b'"ts":1700000000000', b'"ts":-0') + b"}"
    if roll == 1:
        n = MAX_DEPTH - 1  # with the record's object: exactly MAX_DEPTH levels
        return _with(i, b'"properties":' + b"[" * n + b"]" * n)
    if roll == 2:
        event_id = f"{i:08d}" + "é" * ((MAX_FIELD_BYTES - 8) // 2)  # unique, and exactly at the cap
        return _json({**good, "event_id": event_id, "name": "n" * MAX_FIELD_BYTES, "tenant": "t" * MAX_FIELD_BYTES})
    if roll == 3:
        return _json({**good, "user_id": f"{i:08d}" + "😀" * ((MAX_USER_ID_BYTES - 8) // 4)})
    if roll == 4:
        return _with(i, b'"values":{"big":' + b"9" * 4_300 + b',"neg":-' + b"9" * 4_299 + b"}")
    if roll == 5:
        return _with(i, b'"properties":{"blob":"' + b"y" * rng.randint(1_000, 50_000) + b'"}')
    if roll == 6:
        return _with(i, b'"user_id":"' + b"hu-dup-" + str(i).encode() + b'"')  # a duplicate key, valid last
    if roll == 7:
        return b'{"event_id":"e\\ud83d\\ude00' + str(i).encode() + b'","user_id":"hu\\u0000' + str(i).encode() + \
            b'","ts":1700000000000,"name":"\\u00e9v\\u00e8nement","values":{"\\ud83d\\ude00":"\\ud83d\\ude00"}}'
    if roll == 8:
        return b" \t\r\n" + _json(good) + b" \n"
    return _json({**good, "values": {"a": -0.0, "b": 1e308, "c": -1e-308, "d": 2**63, "e": -(2**63) - 1,
                                     "f": 5e-324, "g": None, "h": True}})


# --- event time and hostile names (issue 14, item 3 and the hostile-input suite) ------------------------

DAY_MS = 86_400_000
# Far-future timestamps are judged against the broker's append time (operators/event_time.py), which is
# the wall clock when the record is produced: a day ahead of the generation clock at least, so that
# however long producing takes, the record is refused.
FUTURE_REASON = (r"ts is \d+ ms after the record's append time \d+, over the \d+ ms allowed "
                 r"\(events.max_future_skew_ms\)")


def _far_future(rng: random.Random, i: int) -> bytes:
    now = int(time.time() * 1000)
    ts = rng.choice([MAX_TS, now + rng.randint(DAY_MS, 365 * DAY_MS), now + rng.randint(DAY_MS, MAX_TS - now)])
    return _json(_good(i, ts=ts, user_id=f"hf{i}"))


def _far_past(rng: random.Random, i: int) -> bytes:
    """Valid: a watermark only moves forward, so an old ts is evaluated (and is late for its windows)."""
    ts = rng.choice([0, 1, rng.randint(0, 10**12), 1_000_000_000_000 + rng.randint(0, 10**11)])
    return _json(_good(i, ts=ts, user_id=f"hp{i}"))


# Tenant and user-id prefixes an attacker would try: path and key separators, NUL, bidi and
# zero-width characters, quotes, format strings, what looks like our own row-key and state-key syntax.
HOSTILE_NAMES = ["../", "..\\", "/", "\\", "\u0000", "\u202e", "\u200b", "\ufeff", "'; DROP TABLE t; --", "%s%n%x",
                 "{{7*7}}", "${jndi:ldap://x}", "_", "#", ":", "1:", "0:x", "default", " ", "\t\n", "😀", "漢字",
                 "\ud7ff", "é" * 100, "x" * 200]


def hostile_tenant(k: int) -> str:
    """The k-th hostile tenant name: a hostile prefix and k (distinct for every k), within 256 bytes."""
    return HOSTILE_NAMES[k % len(HOSTILE_NAMES)] + str(k)


def _hostile_ids(rng: random.Random, i: int) -> bytes:
    """Valid events of hostile tenants (HOSTILE_TENANTS of them, see tenant_rules) and user ids."""
    tenant = hostile_tenant(rng.randrange(HOSTILE_TENANTS))
    user = HOSTILE_NAMES[rng.randrange(len(HOSTILE_NAMES))] + f"u{i}"  # one event each: see odd_valid
    return _json(_good(i, tenant=tenant, user_id=user, event_id=f"hid-{i}-" + HOSTILE_NAMES[i % len(HOSTILE_NAMES)]))


HOSTILE_TENANTS = 64


EVENT_CLASSES: list[HostileClass] = [
    HostileClass("tombstone", re.escape(TOMBSTONE), _keyed(_tombstone)),
    HostileClass("not_json", r"not UTF-8 JSON: (Input data was truncated|JSON is malformed: .* \(byte \d+\))|"
                             r"schema: Expected `object`, got `\w+`", _keyed(_not_json)),
    HostileClass("invalid_utf8", r"not UTF-8 JSON: invalid UTF-8 \(byte \d+\)", _keyed(_invalid_utf8)),
    HostileClass("lone_surrogate", r"not UTF-8 JSON: (Input data was truncated|JSON is malformed: (invalid utf-16 "
                                   r"surrogate pair|unexpected end of (escaped utf-16 surrogate pair|hex escape)) "
                                   r"\(byte \d+\))", _keyed(_surrogate)),
    HostileClass("deep_nesting", rf"not UTF-8 JSON: (JSON is malformed: nested deeper than {MAX_DEPTH} levels|"
                                 r"Input data was truncated)|record is \d+ bytes, over the \d+ byte limit|"
                                 r"schema: Expected `object`, got `array`", _keyed(_deep)),
    HostileClass("ts_out_of_range", rf"ts is negative|ts is after {MAX_TS} \(9999-12-31T23:59:59.999Z\)|"
                                    r"schema: Integer value out of range - at `\$.ts`", _keyed(_ts_out_of_range)),
    HostileClass("ts_wrong_type", r"schema: (Expected `int`, got `\w+`|Number out of range) - at `\$.ts`",
                 _keyed(_ts_wrong_type)),
    HostileClass("huge_numbers", r"schema: (Number|Integer value) out of range - at `\$.values\[...\]`",
                 _keyed(_numbers)),
    HostileClass("nan_infinity", r"not UTF-8 JSON: JSON is malformed: invalid character \(byte \d+\)",
                 _keyed(_non_finite)),
    HostileClass("oversized_field", rf"(event_id|tenant|name) is over {MAX_FIELD_BYTES} bytes|"
                                    rf"user_id is over {MAX_USER_ID_BYTES} bytes", _keyed(_oversized_field)),
    HostileClass("wrong_type", r"schema: Expected `[^`]+`, got `\w+`( - at `\$\.[a-z_]+(\[...\])?`)?",
                 _keyed(_wrong_type)),
    HostileClass("missing_or_empty", r"schema: Object missing required field `\w+`|\w+ is empty",
                 _keyed(_missing_or_empty)),
    HostileClass("duplicate_keys", r"schema: Expected `\w+`, got `\w+` - at `\$\.\w+`|\w+ is empty|ts is negative",
                 _keyed(_duplicate_keys)),
    HostileClass("oversized_record", rf"record is \d+ bytes, over the {MAX_RECORD_BYTES} byte limit",
                 _keyed(_oversized_record)),
    HostileClass("bom", r"not UTF-8 JSON: (JSON is malformed: invalid character \(byte 0\)|invalid UTF-8 \(byte 0\))",
                 _keyed(_bom)),
    HostileClass("empty", r"not UTF-8 JSON: (Input data was truncated|JSON is malformed: invalid character "
                          r"\(byte 0\))", _keyed(_empty)),
    HostileClass("control_char", r"not UTF-8 JSON: JSON is malformed: invalid character \(byte \d+\)",
                 _keyed(_control)),
    HostileClass("giant", rf"record is \d+ bytes, over the {MAX_RECORD_BYTES} byte limit", _keyed(_giant)),
    HostileClass("odd_valid", None, _keyed(_odd_valid)),
    # Refused only against the record's append time (operators/event_time.parse_appended); parse_record
    # alone takes them (their ts is within the contract's range).
    HostileClass("far_future", FUTURE_REASON, _keyed(_far_future)),
    HostileClass("far_past", None, _keyed(_far_past)),
    HostileClass("hostile_ids", None, _keyed(_hostile_ids)),
]
EVENT_CLASS = {c.name: c for c in EVENT_CLASSES}


def hostile_events(seed: int, per_class: int, ts: int, giants: int | None = None) -> Iterator[HostileRecord]:
    """`per_class` records of every event class (`giants` of the 1 MiB+ class, default
    `per_class`), class by class, stamped `ts` (shuffle them into the traffic)."""
    rng = random.Random(f"segstream-hostile-{seed}")
    n = 0
    for hostile in EVENT_CLASSES:
        for _ in range(per_class if hostile.name != "giant" or giants is None else giants):
            key, value = hostile.make(rng, n)
            yield HostileRecord(hostile.name, key, value, ts)
            n += 1


# --- rule classes -------------------------------------------------------------------------------------


def _rule(i: int, **fields: object) -> dict:
    return {"id": f"hr{i}", "description": "hostile", "when": "sessions >= 1", **fields}


def _rule_not_json(rng: random.Random, i: int) -> tuple[bytes | None, bytes | None]:
    return f"hr{i}".encode(), rng.choice([b"{nope", b"when: x", b"{'id': 'a'}", _json(_rule(i))[:-1], b"[",
                                          _json(_rule(i)) + b"x"])


def _rule_not_object(rng: random.Random, i: int) -> tuple[bytes | None, bytes | None]:
    return f"hr{i}".encode(), _json(rng.choice([[], [1], "rule", 1, 1.5, True, None]))


def _rule_no_compile(rng: random.Random, i: int) -> tuple[bytes | None, bytes | None]:
    when = rng.choice(["sessions >", "sessions >>> 1", "(sessions > 1", "sessions > 1)", "&&", "sessions = 1",
                       "'unclosed", "sessions > 1 &&", "1 +* 2"])
    return f"hr{i}".encode(), _json(_rule(i, when=when))


def _rule_unknown_stat(rng: random.Random, i: int) -> tuple[bytes | None, bytes | None]:
    when = rng.choice([f"no_such_stat_{i} > 1", f"sessions > 1 && missing_{i} == 2", f"unknown_{i}"])
    return f"hr{i}".encode(), _json(_rule(i, when=when))


def _rule_huge(rng: random.Random, i: int) -> tuple[bytes | None, bytes | None]:
    terms = rng.randint(500, 3_000)  # a long expression that ends on an unknown stat
    when = " || ".join(f"sessions > {k}" for k in range(terms)) + f" || nope_{i} > 1"
    return f"hr{i}".encode(), _json(_rule(i, when=when))


def _rule_over_limit(rng: random.Random, i: int) -> tuple[bytes | None, bytes | None]:
    """A rule over one of operators/rule_limits.py's limits: the cases that crash or stall cel-rust."""
    forty, hundred = str(list(range(40))), str(list(range(100)))
    when = rng.choice([
        "sessions > 1 && " + " " * 66_000 + ")",  # a syntax error past column 65,535: cel-rust panics
        f"{forty}.map(a, {forty}.map(b, {forty}.map(c, c))).size() > 0",  # aborts the Python process
        f"{forty}.map(x, {forty}.map(y, {forty})).size() > sessions",
        f"{hundred}.all(x, {hundred}.all(y, {hundred}.all(z, x + y + z >= 0)))",  # 0.3 s per evaluation
        "(" * rng.randint(33, 300) + "sessions" + ")" * 3 + " > 1",
        "event.values.exists(k, k.matches('^a'))",
    ])
    return f"hr{i}".encode(), _json(_rule(i, when=when))


def _rule_deep(rng: random.Random, i: int) -> tuple[bytes | None, bytes | None]:
    n = rng.randint(300, 900)  # deep JSON in a field the rule schema does not have (both parsers read it)
    return f"hr{i}".encode(), _json(_rule(i))[:-1] + b',"extra":' + b"[" * n + b"]" * n + b"}"


def _rule_wrong_types(rng: random.Random, i: int) -> tuple[bytes | None, bytes | None]:
    field = rng.choice(["id", "description", "when", "tenant"])
    return f"hr{i}".encode(), _json(_rule(i, **{field: rng.choice([1, 1.5, True, [], {}])}))


def _rule_key_mismatch(rng: random.Random, i: int) -> tuple[bytes | None, bytes | None]:
    return f"other{i}".encode(), _json(_rule(i))


def _rule_tombstone(rng: random.Random, i: int) -> tuple[bytes | None, bytes | None]:
    return f"unknown-rule-{i}".encode(), rng.choice([None, b""])


RULE_CLASSES: list[HostileClass] = [
    HostileClass("rule_not_json", r"rule: rule is not JSON: .*", _rule_not_json),
    HostileClass("rule_not_object", r"rule: rule must be a JSON object, got \w+", _rule_not_object),
    HostileClass("rule_no_compile", r"rule: rule '\w+': `when` does not compile: .*", _rule_no_compile),
    HostileClass("rule_unknown_stat", r"rule: rule '\w+': `when` uses unknown name\(s\) .*", _rule_unknown_stat),
    HostileClass("rule_huge", r"rule: rule '\w+': `when` is longer than 4096 characters", _rule_huge),
    HostileClass("rule_over_limit", r"rule: rule '\w+': `when` (is longer than 4096 characters|nests comprehensions "
                 r"deeper than 2|has an estimated cost above 10000 .*|is nested deeper than 32 levels|calls "
                 r"matches\(\) inside a comprehension)", _rule_over_limit),
    HostileClass("rule_deep", r"rule: `extra`: Extra inputs are not permitted", _rule_deep),
    HostileClass("rule_wrong_types", r"rule: `\w+`: .*", _rule_wrong_types),
    HostileClass("rule_key_mismatch", r"rule: record key 'other\d+' does not match rule id 'hr\d+'",
                 _rule_key_mismatch),
    HostileClass("rule_tombstone_unknown", None, _rule_tombstone),
]
RULE_CLASS = {c.name: c for c in RULE_CLASSES}


def hostile_rules(seed: int, per_class: int, ts: int) -> Iterator[HostileRecord]:
    """`per_class` records of every rule class, class by class, stamped `ts`."""
    rng = random.Random(f"segstream-hostile-rules-{seed}")
    n = 0
    for hostile in RULE_CLASSES:
        for _ in range(per_class):
            key, value = hostile.make(rng, n)
            yield HostileRecord(hostile.name, key, value, ts)
            n += 1


def tenant_rules(tenants: int = HOSTILE_TENANTS) -> Iterator[HostileRecord]:
    """One valid rule of its own for each of the first `tenants` hostile tenants (hostile_tenant):
    accepted, each tenant then has a rule view of its own in the evaluator, a cache bounded by
    rule_limits.max_cached_tenants (the hostile-input test reads its gauge)."""
    for k in range(tenants):
        rule = {"id": f"tenant-rule-{k}", "description": "a hostile tenant's own rule", "when": "events_total >= 2",
                "tenant": hostile_tenant(k)}
        yield HostileRecord("tenant_rule", f"tenant-rule-{k}".encode(), _json(rule), 0)
