"""Generates ../resources/bigtable/rows.jsonl from the Python sink's own code (sinks/bigtable).

    .venv/bin/python jvm/job/src/test/python/gen_bigtable_fixtures.py

One line per case: {"event_json", "evaluation_json", "width"} and either the two rows
{"event": {"key_b64", "cells"}, "profile": {...}} with cells [family, qualifier, value_b64, micros]
exactly as sinks/bigtable/mutations.py builds them, or {"error": the ValueError's message}.
BigtableRowsTest (jvm/job) builds the same rows in Java and compares.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", "..", ".."))
sys.path.insert(0, ROOT)
warnings.simplefilter("ignore", FutureWarning)

from operators.events import MAX_TS, Event, encode_event  # noqa: E402
from sinks.bigtable import mutations  # noqa: E402

OUT = os.path.join(HERE, "..", "resources", "bigtable", "rows.jsonl")


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def row(entry) -> dict:
    return {
        "key_b64": b64(entry.row_key),
        "cells": [[c.family, b64(c.qualifier), b64(c.new_value), c.timestamp_micros] for c in entry.mutations],
    }


def evaluation(event: Event, seq: int, stats: str, segments: str, first: bool = True) -> str:
    # As the JVM engine renders it (no spaces), the raw values spliced in verbatim.
    head = {"event_id": event.event_id, "tenant": event.tenant, "user_id": event.user_id, "ts": event.ts,
            "seq": seq}
    fields = [f"{json.dumps(k, ensure_ascii=False)}:{json.dumps(v, ensure_ascii=False)}" for k, v in head.items()]
    raw = [f'"stats":{stats}', f'"segments":{segments}']
    parts = raw + fields if not first else fields + raw
    return "{" + ",".join(parts + ['"rules_version":3']) + "}"


def case(event: Event, seq: int, width: int, stats: str = '{"events_total":1}', segments: str = "[]",
         first: bool = True) -> dict:
    event_json = encode_event(event)
    evaluation_json = evaluation(event, seq, stats, segments, first).encode()
    out: dict = {"event_json": event_json.decode(), "evaluation_json": evaluation_json.decode(), "width": width}
    try:
        ev = mutations.decode_event(event_json)
        out["event"] = row(mutations.event_entry(ev, event_json, width, seq, 3))
        out["profile"] = row(mutations.profile_entry(evaluation_json, width))
    except ValueError as exc:
        for k in ("event", "profile"):
            out.pop(k, None)
        out["error"] = str(exc)
    return out


def cases() -> list[dict]:
    e = Event
    return [
        case(e("e1", "u000017", 1767225600000, "page_view"), 12, 4),
        case(e("e1", "u000017", 1767225600000, "page_view", {"amount": 1.5}, "acme"), 1, 4,
             stats='{"events_total":3,"revenue":12.25,"last":"x"}', segments='["big_spender","vip"]'),
        # escaping: `_` and `%` in every field, a literal "%5F" that must not collide with "_"
        case(e("id_with_%_", "a_b%5Fc", 5, "n_a%me", tenant="t_1%"), 7, 4),
        case(e("e2", "a%5Fb_c", 5, "x", tenant="t"), 8, 8),
        # unicode: BMP, astral (surrogate pairs in Java), combining sequences
        case(e("évt-ü", "ユーザー_1", 42, "購入", {"k": "ü"}, "テナント"), 3, 4,
             stats='{"名前":"値","emoji":"👩‍💻"}', segments='["ü_seg"]'),
        case(e("😀", "👩‍💻user", 0, "emoji🎉"), 0, 64),
        # ts at both ends of the contract, width at both ends
        case(e("max", "u", MAX_TS, "n"), 2**40, 1),
        case(e("zero", "u", 0, "n"), 1, 64),
        # stats/segments with whitespace, escapes and nesting kept byte for byte (msgspec.Raw)
        case(e("raw", "u", 10, "n"), 5, 4,
             stats='{ "a" : [1, 2.50, {"b": null}], "s": "q\\"uo\\\\te\\u00e9" }', segments=' [ ] '.strip(),
             first=False),
        case(e("raw2", "u", 10, "n"), 6, 4, stats='{}', segments='{"seg":{"since":1}}'),
        # a key at the limit and one byte over it (event_id is not bounded by the contract)
        case(e("x" * 4067, "u", 1, "n", tenant="t"), 1, 4),  # 4096 bytes
        case(e("x" * 4096, "u", 1, "n"), 1, 4),
        case(e("e", "u", 1, "n", tenant="t" * 5000), 1, 4),
    ]


def main() -> None:
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        for c in cases():
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
