"""Both engines behind one JSON-lines replay protocol, for the differential test.

The Python engine (`operators/`, the reference semantics) runs in this process (`python_replay`);
the JVM engine (`jvm/engine`, io.segstream.engine.Replay) runs as `java -jar segstream-engine.jar`
(`jvm_replay`). The same script goes into both and the output lines must be byte-identical.

    in:  {"catalogue": {...}}                  first: the conf/stats.yaml structure
         {"rules": [...]}                      the initial rules
         {"event": "raw record value"}         or {"event_b64": "..."} for arbitrary bytes
         {"rule_change": {"key": "...", "value": "rule json" or null}}
         {"timer": {"tenant": "...", "user_id": "...", "now": 123}}
         {"max_future_skew_ms": 60000}         events.max_future_skew_ms for the events after it
         an event line may carry "append_time": ms, the record's append time its ts is judged against
    out: {"evaluation": {...}}  {"expiry": {...}}  {"dead_letter": "reason"}
         {"duplicate": {...}}                  a retried event_id: the receipt it is answered with

Per-user state is keyed by (tenant, user_id). `rules_version` is not part of an evaluation here:
it counts rules-topic records as they interleave with events in the job, a property of the job,
not of the engines.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterable

import msgspec

from operators.catalogue import parse_catalogue
from operators.evaluator import Evaluator
from operators.event_time import DEFAULT_MAX_FUTURE_SKEW_MS, parse_appended
from operators.events import InvalidEvent
from operators.rules import RuleError, RuleSet, compile_rule
from segstream.jvm import ENGINE_JAR, java_binary, require

_encode = msgspec.json.Encoder().encode


def _line(kind: str, value: object) -> str:
    return _encode({kind: value}).decode()


def python_replay(lines: Iterable[str]) -> list[str]:
    """The script through the Python engine; one output line per result."""
    out: list[str] = []
    catalogue = None
    initial: list[dict] = []
    rules: RuleSet | None = None
    evaluator: Evaluator | None = None
    states: dict[tuple[str, str], bytes] = {}
    max_future_skew_ms = DEFAULT_MAX_FUTURE_SKEW_MS

    def engine() -> Evaluator:
        nonlocal rules, evaluator
        if evaluator is None:
            if catalogue is None:
                raise ValueError('the first line must be {"catalogue": ...}')
            if rules is None:
                rules = RuleSet(catalogue, [compile_rule(rule, catalogue) for rule in initial])
            evaluator = Evaluator(catalogue, rules)
        return evaluator

    for text in lines:
        if not text.strip():
            continue
        cmd = json.loads(text)
        if "catalogue" in cmd:
            raw = cmd["catalogue"]
            catalogue = parse_catalogue(json.loads(raw) if isinstance(raw, str) else raw)
            evaluator = rules = None
        elif "max_future_skew_ms" in cmd:
            max_future_skew_ms = int(cmd["max_future_skew_ms"])
        elif "rules" in cmd:
            initial = list(cmd["rules"])
            evaluator = rules = None
        elif "event" in cmd or "event_b64" in cmd:
            raw_event = cmd["event"].encode() if "event" in cmd else base64.b64decode(cmd["event_b64"])
            try:
                event = parse_appended(raw_event, cmd.get("append_time"), max_future_skew_ms)
            except InvalidEvent as exc:
                out.append(_line("dead_letter", str(exc)))
                continue
            key = (event.tenant, event.user_id)
            result = engine().process(states.get(key), event)
            states[key] = result.blob
            if result.expiry is not None:
                out.append(_line("expiry", result.expiry))
            out.append(_line("duplicate" if result.duplicate else "evaluation", result.evaluation))
        elif "rule_change" in cmd:
            change = cmd["rule_change"]
            engine()
            assert rules is not None
            value = change.get("value")
            if value is not None and not isinstance(value, str):
                value = json.dumps(value)
            try:
                reason = rules.apply_change(change["key"], value.encode() if value is not None else None)
            except RuleError as exc:  # apply_change reports reasons; this is belt and braces
                reason = str(exc)
            if reason is not None:
                out.append(_line("dead_letter", f"rule: {reason}"))
        elif "timer" in cmd:
            timer = cmd["timer"]
            key = (timer["tenant"], timer["user_id"])
            if key not in states:
                continue
            expired = engine().expire(states[key], timer["now"], timer["tenant"], timer["user_id"])
            if expired is not None:
                states[key] = expired[0]
                out.append(_line("expiry", expired[1]))
        else:
            raise ValueError(f"unknown replay line: {text}")
    return out


def jvm_replay(lines: Iterable[str], timeout: float = 300) -> list[str]:
    """The script through the JVM engine (a fresh JVM per call)."""
    jar = require(ENGINE_JAR, "the JVM engine jar")
    result = subprocess.run([java_binary(), "-XX:TieredStopAtLevel=1", "-Xshare:auto", "-jar", str(jar)],
                            input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"the JVM engine failed ({result.returncode}):\n{result.stderr[-4000:]}")
    # split("\n"), not splitlines(): JSON strings may hold U+2028, U+0085... unescaped.
    return result.stdout.split("\n")[:-1] if result.stdout.endswith("\n") else result.stdout.split("\n")
