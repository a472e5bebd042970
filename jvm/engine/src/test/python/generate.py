"""Generates the cross-check vectors in ../resources/crosscheck/ from the Python engine.

    cd /work/wt-core && /work/main/.venv/bin/python jvm/engine/src/test/python/generate.py

Deterministic (fixed seeds). Writes:
  replay_*.jsonl / replay_*.expected.jsonl  scripts for Replay and the Python engine's output (segstream/replay.py)
  events.jsonl      raw record (base64) -> parse_record's reason, or the event with typed values
  floats.jsonl      double bits -> msgspec JSON text, repr, distinct digest key's BLAKE2b-8
  catalogues.jsonl  catalogue document -> names, fingerprints, expire_after, or the CatalogueError text
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", "..", ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import msgspec  # noqa: E402

from segstream.replay import python_replay  # noqa: E402
from operators.catalogue import CatalogueError, parse_catalogue  # noqa: E402
from operators.events import InvalidEvent, parse_record  # noqa: E402
from operators.stats import distinct_digest  # noqa: E402

OUT = os.path.join(HERE, "..", "resources", "crosscheck")

CATALOGUE = {
    "expire_after": "1d",
    "stats": [
        {"name": "events_total", "agg": "count"},
        {"name": "sessions", "agg": "sessions", "gap": "30m"},
        {"name": "first_seen", "agg": "first_seen"},
        {"name": "last_seen", "agg": "last_seen"},
        {"name": "first_v", "agg": "first", "field": "v"},
        {"name": "last_v", "agg": "last", "field": "v"},
        {"name": "sum_v", "agg": "sum", "field": "v"},
        {"name": "avg_v", "agg": "avg", "field": "v"},
        {"name": "min_v", "agg": "min", "field": "v"},
        {"name": "max_v", "agg": "max", "field": "v"},
        {"name": "distinct_v", "agg": "distinct", "field": "v"},
        {"name": "distinct_s", "agg": "distinct", "field": "s"},
        {"name": "buys", "agg": "count", "event": "buy"},
        {"name": "views_1h", "agg": "count", "event": "view", "window": "1h", "resolution": "5m"},
        {"name": "sum_v_2h", "agg": "sum", "field": "v", "window": "2h", "resolution": "10m"},
        {"name": "avg_v_2h", "agg": "avg", "field": "v", "window": "2h", "resolution": "10m"},
        {"name": "min_v_1h", "agg": "min", "field": "v", "window": "1h"},
        {"name": "max_v_1h", "agg": "max", "field": "v", "window": "1h"},
        {"name": "distinct_s_3h", "agg": "distinct", "field": "s", "window": "3h", "resolution": "1h"},
        {"name": "total_1d", "agg": "count", "window": "1d"},
    ],
}

INT64_MAX = 2**63 - 1


def random_value(rng: random.Random):
    kind = rng.randrange(14)
    if kind == 0:
        return rng.randrange(-5, 6)
    if kind == 1:
        return rng.choice([0.0, -0.0, 1.0, -1.0, 0.5, 2.5, 1e23, 5e-324, 1e16, 1e-7, 0.1, 0.2, 3.0])
    if kind == 2:
        return rng.uniform(-1e6, 1e6)
    if kind == 3:
        return rng.choice([INT64_MAX, -INT64_MAX - 1, INT64_MAX - 3, 2**62, 2**53 + 1, -(2**53) - 1])
    if kind == 4:
        return rng.choice([2**63, 2**64 - 1, 10**30, -(10**25)])  # not numbers for stats
    if kind == 5:
        return rng.choice([True, False])
    if kind == 6:
        return None
    if kind == 7:
        return rng.choice(["a", "b", "é", "😀", "1", ""])
    if kind == 8:
        return rng.choice([1e308, -1e308, 1.7976931348623157e308])
    if kind == 9:
        return rng.randrange(-10**12, 10**12)
    if kind == 10:
        return struct.unpack(">d", rng.randbytes(8))[0]  # any bits; NaN/inf are not JSON: fixed below
    if kind == 11:
        return rng.choice([9007199254740993, 123456789012345678])
    return rng.randrange(100)


def event_json(ev: dict) -> str:
    return json.dumps(ev, ensure_ascii=False, allow_nan=False)


def replay_script(seed: int, users: int, n: int) -> list[str]:
    rng = random.Random(seed)
    lines = [json.dumps({"catalogue": CATALOGUE})]
    clock = {u: 1_700_000_000_000 + rng.randrange(10**7) for u in range(users)}
    for i in range(n):
        u = rng.randrange(users)
        step = rng.choice([0, 1, 1000, 60_000, 300_000, 1_800_001, 3_600_000, 7_200_000, -600_000, -4_000_000,
                           90_000_000])
        clock[u] = max(0, clock[u] + step)
        values = {}
        if rng.random() < 0.8:
            v = random_value(rng)
            if isinstance(v, float) and not math.isfinite(v):
                v = 1.5
            values["v"] = v
        if rng.random() < 0.7:
            values["s"] = f"s{rng.randrange(200 if u == 0 else 12)}"
        ev = {"event_id": f"e{i}", "user_id": f"u{u}", "ts": clock[u],
              "name": rng.choice(["view", "buy", "view", "other"]), "values": values}
        if rng.random() < 0.2:
            ev["tenant"] = "t2"
        lines.append(json.dumps({"event": event_json(ev)}, ensure_ascii=False))
        if rng.random() < 0.03:
            lines.append(json.dumps({"timer": {"tenant": ev.get("tenant", "default"), "user_id": ev["user_id"],
                                               "now": clock[u] + rng.choice([86_400_000, 86_400_000 + 5, 1000])}}))
        if rng.random() < 0.01:
            lines.append(json.dumps({"event": "{\"event_id\":\"x\"}"}))
        if i == n // 2:
            # catalogue evolution: drop one stat, change one, add one (migration by fingerprint)
            changed = json.loads(json.dumps(CATALOGUE))
            changed["stats"] = [s for s in changed["stats"] if s["name"] != "sum_v"]
            changed["stats"][1]["gap"] = "60m"
            changed["stats"].append({"name": "last_s", "agg": "last", "field": "s"})
            lines.append(json.dumps({"catalogue": json.dumps(changed)}))
    return lines


def write_replay(name: str, lines: list[str]) -> None:
    with open(os.path.join(OUT, f"replay_{name}.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(OUT, f"replay_{name}.expected.jsonl"), "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in python_replay(lines)))


def typed(value):
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, float):
        return {"float": struct.pack(">d", value).hex()}
    if isinstance(value, str):
        return {"str": value}
    return {"null": None}


B = b'{"event_id":"e","user_id":"u","ts":1,"name":"n"'


def event_corpus() -> list[bytes]:
    cases = [b"", b"null", b"[]", b"{}", b"{", b"1", b'"x"', b"true", B + b"}", B + b',"tenant":"t"}',
             B + b',"tenant":""}', B + b',"tenant":null}', B + b',"values":null}', B + b',"values":[]}',
             B + b',"values":{"a":[1]}}', B + b',"values":{"a":{}}}', B + b',"values":{"a":1e400}}',
             B + b',"values":{"a":-1e400}}', B + b',"values":{"a":1e-400}}',
             B + b',"values":{"a":123456789012345678901234567890}}', B + b',"values":{"a":18446744073709551615}}',
             B + b',"values":{"a":9223372036854775807,"b":-9223372036854775808,"c":9223372036854775808}}',
             B + b',"values":{"a":-0,"b":-0.0,"c":1.0,"d":1E+2,"e":0.1}}',
             B + b',"values":{"a":"\\ud83d\\ude00","b":"\\u00e9","c":"\\u0000"}}',
             B + b',"values":{"a":"\\ud800"}}', B + b',"values":{"a":"\\ude00"}}', B + b',"values":{"\\ud800":1}}',
             B + b',"values":{"a":1,"a":2,"b":3}}', B + b',"values":{"a":true,"b":false,"c":null}}',
             B + b',"x":[1,{"a":[[[]]]}],"y":{"z":null}}', B + b',"event_id":"f"}', B + b'} x', B + b"}  \n",
             b" " + B + b"}", B + b",}", B + b',"values":{"a":01}}', B + b',"values":{"a":NaN}}',
             B + b',"values":{"a":Infinity}}', B + b',"values":{"a":.5}}', B + b',"values":{"a":1.}}',
             B + b',"values":{"a":+1}}', B + b',"values":{"a":"\t"}}', B + b',"values":{"a":"\\x"}}',
             B + b',"values":{"a":1,"b":"x}}', b"\xef\xbb\xbf" + B + b"}",
             b'{"event_id":"e","user_id":"u","ts":1.0,"name":"n"}', b'{"event_id":"e","user_id":"u","ts":1e3,"name":"n"}',
             b'{"event_id":"e","user_id":"u","ts":1e400,"name":"n"}', b'{"event_id":"e","user_id":"u","ts":"1","name":"n"}',
             b'{"event_id":"e","user_id":"u","ts":true,"name":"n"}', b'{"event_id":"e","user_id":"u","ts":null,"name":"n"}',
             b'{"event_id":"e","user_id":"u","ts":-1,"name":"n"}', b'{"event_id":"e","user_id":"u","ts":-99999999999999999999999,"name":"n"}',
             b'{"event_id":"e","user_id":"u","ts":9223372036854775807,"name":"n"}', b'{"event_id":1,"user_id":"u","ts":1,"name":"n"}',
             b'{"user_id":"u","ts":1,"name":"n"}', b'{"event_id":"e","ts":1,"name":"n"}', b'{"event_id":"e","user_id":"u","name":"n"}',
             b'{"event_id":"e","user_id":"u","ts":1}', b'{"event_id":"","user_id":"u","ts":1,"name":"n"}',
             b'{"event_id":"e","user_id":"","ts":1,"name":"n"}', b'{"event_id":"e","user_id":"u","ts":1,"name":""}',
             b'{"event_id":"e","user_id":"' + b"x" * 256 + b'","ts":1,"name":"n"}',
             b'{"event_id":"e","user_id":"' + b"x" * 257 + b'","ts":1,"name":"n"}',
             b'{"event_id":"e","user_id":"' + "é".encode() * 129 + b'","ts":1,"name":"n"}',
             B + b',"values":{"big":"' + b"x" * (64 * 1024) + b'"}}', B + b',"pad":"' + b"x" * (64 * 1024 - 60) + b'"}',
             b'{"ts":"x","event_id":1}', b'{"event_id":"","user_id":"","ts":-1,"name":""}',
             b'{"event_id":"e","user_id":"u","ts":1,"name":"n","values":{"a":1},"values":{"b":2}}',
             B + b',"values":{"a":"\x7f"}}', B + b',"values":{"a":"\xc3\xa9\xf0\x9f\x98\x80"}}']
    return cases


def float_corpus() -> list[float]:
    rng = random.Random(7)
    xs = [0.0, -0.0, 1.0, -1.0, 0.1, 0.2, 0.1 + 0.2, 1e23, 5e-324, 1e16, 1e15, 9999999999999998.0, 1e-5, 9.5e-6,
          1e-6, 2.5e-5, 1.7976931348623157e308, 2.2250738585072014e-308, 8.563216986513925e17, 123456789.125,
          2.0**63, -(2.0**63), 2.0**64, 1.5, 100.0, 1e22, 1e21, 4.35e-5]
    for k in range(-320, 309, 7):
        xs.append(1.2345678901234567 * 10.0**k)
        xs.append(10.0**k)
    for _ in range(3000):
        x = struct.unpack(">d", rng.randbytes(8))[0]
        if math.isfinite(x):
            xs.append(x)
    for _ in range(1000):
        xs.append(rng.uniform(-1e7, 1e7))
        xs.append(float(rng.randrange(-2**60, 2**60)))
    return xs


def catalogue_corpus() -> list:
    good = CATALOGUE
    cases = [good, {"stats": []}, {"stats": [{"name": "x", "agg": "sessions"}]},
             {"stats": [{"name": "w", "agg": "count", "window": "2d"}]},
             {"stats": [{"name": "w", "agg": "count", "window": "60m"}, {"name": "v", "agg": "count", "window": "1h"}]},
             {"stats": [{"name": "é", "agg": "count"}]}, {"stats": [{"name": "n", "agg": "distinct", "field": "é\"\\\n\x7f😀"}]},
             {"stats": [{"name": "n", "agg": "last", "event": "x y", "field": "f"}], "expire_after": "90d"},
             {"stats": [{"name": "a", "agg": "count"}, {"name": "a", "agg": "sum", "field": "x"}]},
             {"stats": [{"name": "a", "agg": "nope"}]}, {"stats": [{"name": "a", "agg": "sum"}]},
             {"stats": [{"name": "a", "agg": "count", "field": "x"}]}, {"stats": [{"name": "a", "agg": "count", "gap": "1m"}]},
             {"stats": [{"name": "a", "agg": "count", "resolution": "1m"}]},
             {"stats": [{"name": "a", "agg": "first", "field": "x", "window": "1h"}]},
             {"stats": [{"name": "a", "agg": "count", "window": "1h", "resolution": "7m"}]},
             {"stats": [{"name": "a", "agg": "count", "window": "30d", "resolution": "1m"}]},
             {"stats": [{"name": "a", "agg": "count", "window": "0m"}]}, {"stats": [{"name": "a", "agg": "count", "window": "1y"}]},
             {"stats": [{"name": "a", "agg": "count", "window": 5}]}, {"stats": [{"name": "a", "agg": "count", "oops": 1}]},
             {"stats": [{"name": "1a", "agg": "count"}]}, {"stats": [{"name": "event", "agg": "count"}]},
             {"stats": [{"name": "a", "agg": "count", "event": ""}]}, {"stats": [{"agg": "count"}]},
             {"stats": [{"name": 3, "agg": "count"}]}, {"stats": "x"}, {}, {"stats": [], "extra": 1},
             {"stats": [], "expire_after": "0d"}, {"stats": [{"name": "a", "agg": "count", "window": " 1h "}]},
             {"stats": [{"name": "a", "agg": "sessions", "gap": "500ms"}]},
             {"stats": [], "dedup_events": 16, "dedup_horizon": "1h"}, {"stats": [], "dedup_events": 1000},
             {"stats": [], "dedup_events": None, "dedup_horizon": None}, {"stats": [], "dedup_events": 0},
             {"stats": [], "dedup_events": 1001}, {"stats": [], "dedup_events": 2**70}, {"stats": [], "dedup_events": "16"},
             {"stats": [], "dedup_events": True}, {"stats": [], "dedup_events": 16.0}, {"stats": [], "dedup_events": [1]},
             {"stats": [], "dedup_events": 4, "dedup_horizon": "soon"}, {"stats": [], "dedup_events": 4, "dedup_horizon": 5},
             {"stats": [], "dedup_horizon": "1h"}, {"stats": [], "dedup_events": None, "dedup_horizon": "1h"},
             {"stats": [{"name": "a", "agg": "count"}, {"name": "a", "agg": "count"}], "dedup_horizon": "1h"},
             {"stats": [], "dedup_events": 0, "dedup_horizon": "0s"}]
    return cases


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    write_replay("small", replay_script(1, 3, 400))
    write_replay("many", replay_script(2, 12, 1500))

    with open(os.path.join(OUT, "events.jsonl"), "w", encoding="utf-8") as f:
        for raw in event_corpus():
            row = {"raw_b64": base64.b64encode(raw).decode()}
            try:
                e = parse_record(raw)
                if not -(2**63) <= e.ts < 2**63:
                    continue
                row["event"] = {"event_id": e.event_id, "tenant": e.tenant, "user_id": e.user_id, "ts": e.ts,
                                "name": e.name, "values": [[k, typed(v)] for k, v in e.values.items()]}
            except InvalidEvent as exc:
                row["reason"] = str(exc)
            except Exception as exc:  # Python's own bugs (UnicodeDecodeError, RecursionError): not vectors
                print("skipped (python raises", type(exc).__name__, "):", raw[:60], file=sys.stderr)
                continue
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    enc = msgspec.json.Encoder()
    with open(os.path.join(OUT, "floats.jsonl"), "w", encoding="utf-8") as f:
        for x in float_corpus():
            f.write(json.dumps({"bits": struct.pack(">d", x).hex(), "json": enc.encode(x).decode(), "repr": repr(x),
                                "digest": distinct_digest(x).hex()}) + "\n")

    with open(os.path.join(OUT, "catalogues.jsonl"), "w", encoding="utf-8") as f:
        for doc in catalogue_corpus():
            row = {"doc": doc}
            try:
                cat = parse_catalogue(doc)
                row["names"] = cat.names
                row["fingerprints"] = [s.fingerprint for s in cat.stats]
                row["expire_after"] = cat.expire_after
                row["dedup_events"] = cat.dedup_events
                row["dedup_horizon"] = cat.dedup_horizon
                row["specs"] = [s.model_dump() for s in cat.stats]
            except CatalogueError as exc:
                row["error"] = str(exc)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
