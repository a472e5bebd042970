"""Both engines behind one JSON-lines replay protocol, for the differential test.

The Python engine (`operators/`, the reference semantics) runs in this process (`python_replay`);
the JVM engine (`jvm/engine`, io.segstream.engine.Replay) runs as `java -jar segstream-engine.jar`
(`jvm_replay`). The same script goes into both and the output lines must be byte-identical.

    in:  {"catalogue": {...}}                  first: the conf/stats.yaml structure
         {"rules": [...]}                      the initial rules
         {"event": "raw record value"}         or {"event_b64": "..."} for arbitrary bytes
         {"rule_change": {"key": "...", "value": "rule json" or null}}
         {"timer": {"tenant": "...", "user_id": "...", "now": 123}}
         {"pii": {"key_hex": ..., "default": {...}, "tenants": {...}}}   a PII policy from here on
         {"signing_keys": ["..."]}             from now on rule changes must be signed (below)
         {"control": {"key": "...", "value": "...", "signature": "..." or null}}   an erase command
         {"max_future_skew_ms": 60000}         events.max_future_skew_ms for the events after it
         an event line may carry "append_time": ms, the record's append time its ts is judged against
    out: {"evaluation": {...}}  {"expiry": {...}}  {"dead_letter": "reason"}
         {"duplicate": {...}}                  a retried event_id: the receipt it is answered with
         {"redacted": {...}}                   under a policy: the event the engine sees, when redacted
         {"dead_letter_fields": {...}}         under a policy: what a redacted dead letter keeps
         {"erased": {...}}                     an erase command's acknowledgement (its user's state is gone)

With `signing_keys`, a `rule_change` carries "signature" (its segstream-signature header, or null)
and goes to RuleSet.apply_signed_change (operators/ownership.py).

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

from operators import erasure as erasures
from operators.catalogue import parse_catalogue
from operators.evaluator import Evaluator
from operators.event_time import DEFAULT_MAX_FUTURE_SKEW_MS, parse_appended
from operators.events import InvalidEvent, encode_event
from operators.pii import Policy
from operators.rules import RuleError, RuleSet, compile_rule
from segstream.jvm import ENGINE_JAR, java_binary, require

_encode = msgspec.json.Encoder().encode


def _line(kind: str, value: object) -> str:
    return _encode({kind: value}).decode()


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode("utf-8", "surrogatepass")


def python_replay(lines: Iterable[str]) -> list[str]:
    """The script through the Python engine; one output line per result."""
    out: list[str] = []
    catalogue = None
    initial: list[dict] = []
    rules: RuleSet | None = None
    evaluator: Evaluator | None = None
    states: dict[tuple[str, str], bytes] = {}
    policy: Policy | None = None
    signing_keys: list[str] | None = None
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
                if policy is not None:
                    redacted = policy.redact(event)
                    if redacted is not event:
                        event = redacted
                        out.append(_line("redacted", msgspec.json.decode(encode_event(event))))
            except InvalidEvent as exc:
                out.append(_line("dead_letter", str(exc)))
                fields = policy.dead_letter_fields(raw_event) if policy is not None else None
                if fields is not None:
                    out.append(_line("dead_letter_fields", fields))
                continue
            key = (event.tenant, event.user_id)
            result = engine().process(states.get(key), event)
            states[key] = result.blob
            if result.expiry is not None:
                out.append(_line("expiry", result.expiry))
            out.append(_line("duplicate" if result.duplicate else "evaluation", result.evaluation))
        elif "pii" in cmd:
            p = cmd["pii"]
            policy = Policy(bytes.fromhex(p["key_hex"]), p.get("default", {}), p.get("tenants", {}))
        elif "rule_change" in cmd:
            change = cmd["rule_change"]
            engine()
            assert rules is not None
            value = change.get("value")
            if value is not None and not isinstance(value, str):
                value = json.dumps(value)
            raw_value = value.encode() if value is not None else None
            try:
                if signing_keys is None:
                    reason = rules.apply_change(change["key"], raw_value)
                else:
                    reason = rules.apply_signed_change(change["key"], raw_value, _bytes(change.get("signature")),
                                                       signing_keys)
            except RuleError as exc:  # apply_change reports reasons; this is belt and braces
                reason = str(exc)
            if reason is not None:
                out.append(_line("dead_letter", f"rule: {reason}"))
        elif "signing_keys" in cmd:
            signing_keys = [str(k) for k in cmd["signing_keys"]]
        elif "control" in cmd:
            control = cmd["control"]
            try:
                erasure = erasures.parse(_bytes(control.get("value")), _bytes(control.get("key")),
                                         _bytes(control.get("signature")), signing_keys or [])
            except erasures.InvalidErasure as exc:
                out.append(_line("dead_letter", str(exc)))
                # A refused control record is a dead letter like any other: redacted by the policy.
                value = _bytes(control.get("value"))
                fields = policy.dead_letter_fields(value) if policy is not None and value is not None else None
                if fields is not None:
                    out.append(_line("dead_letter_fields", fields))
                continue
            had_state = states.pop((erasure.tenant, erasure.user_id), None) is not None
            out.append(_line("erased", erasures.acknowledgement(erasure, had_state)))
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
    if not result.stdout:
        return []  # a script with no output (rule changes only): "".split gives [""]
    return result.stdout.split("\n")[:-1] if result.stdout.endswith("\n") else result.stdout.split("\n")
