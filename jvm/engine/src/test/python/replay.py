"""The Python engine behind the same JSON-lines replay protocol as io.segstream.engine.Replay.

    /work/main/.venv/bin/python replay.py < script.jsonl > expected.jsonl

Rules are not supported here (the JVM side runs NoRules): a RuleSet without rules is used.
"""

from __future__ import annotations

import base64
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", ".."))

import msgspec  # noqa: E402

from operators.catalogue import parse_catalogue  # noqa: E402
from operators.evaluator import Evaluator  # noqa: E402
from operators.events import InvalidEvent, parse_record  # noqa: E402
from operators.rules import RuleSet  # noqa: E402

_encode = msgspec.json.Encoder().encode


def run(lines, out) -> None:
    evaluator = None
    states: dict[str, bytes] = {}
    for line in lines:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if "catalogue" in cmd:
            raw = cmd["catalogue"]
            catalogue = parse_catalogue(json.loads(raw) if isinstance(raw, str) else raw)
            evaluator = Evaluator(catalogue, RuleSet(catalogue, []))
        elif "rules" in cmd:
            pass
        elif "event" in cmd or "event_b64" in cmd:
            raw = cmd["event"].encode() if "event" in cmd else base64.b64decode(cmd["event_b64"])
            try:
                event = parse_record(raw)
            except InvalidEvent as exc:
                out.write(_encode({"dead_letter": str(exc)}).decode() + "\n")
                continue
            key = f"{event.tenant}\x00{event.user_id}"
            result = evaluator.process(states.get(key), event)
            states[key] = result.blob
            if result.expiry is not None:
                out.write(_encode({"expiry": result.expiry}).decode() + "\n")
            out.write(_encode({"evaluation": result.evaluation}).decode() + "\n")
        elif "rule_change" in cmd:
            pass
        elif "timer" in cmd:
            t = cmd["timer"]
            key = f"{t['tenant']}\x00{t['user_id']}"
            if key not in states:
                continue
            expired = evaluator.expire(states[key], t["now"], t["tenant"], t["user_id"])
            if expired is not None:
                states[key] = expired[0]
                out.write(_encode({"expiry": expired[1]}).decode() + "\n")


if __name__ == "__main__":
    run(sys.stdin, sys.stdout)
