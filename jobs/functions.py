"""PyFlink functions: thin glue around the pure logic in operators/."""

from __future__ import annotations

import msgspec
from pyflink.common import Row, Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedBroadcastProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from operators.catalogue import load_catalogue
from operators.evaluator import Evaluator
from operators.events import InvalidEvent, dead_letter, decode_event, encode_event, parse_record
from operators.rules import load_rules

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
# (key, value) rows for the Kafka sink tables
DEAD_LETTER_TYPE = Types.ROW_NAMED(["k", "v"], [BYTES, BYTES])
EVALUATION_TYPE = Types.ROW_NAMED(["k", "v"], [Types.STRING(), Types.STRING()])
# (key = tenant NUL user_id, event bytes) between the parser and the keyed evaluator
KEYED_EVENT_TYPE = Types.TUPLE([Types.STRING(), BYTES])
# (event JSON, evaluation JSON) for the Bigtable mirror
MIRROR_TYPE = Types.TUPLE([Types.STRING(), Types.STRING()])

DEAD_LETTERS = OutputTag("dead-letters", DEAD_LETTER_TYPE)
EXPIRATIONS = OutputTag("expirations", EVALUATION_TYPE)
MIRROR = OutputTag("bigtable-mirror", MIRROR_TYPE)

# Pickled, not PRIMITIVE_ARRAY(BYTE): a bytes-typed state kills the TaskManager JVM in PyFlink 2.3
# thread mode (tests/jobs/test_thread_mode_state.py keeps an eye on it).
USER_STATE = ValueStateDescriptor("user", Types.PICKLED_BYTE_ARRAY())
# rule id -> rule JSON, or b"" for a deletion; plus VERSION_KEY -> count of rule records seen
RULE_CHANGES = MapStateDescriptor("rule-changes", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
VERSION_KEY = "\x00version"
# The watermark at the end of a bounded input: it fires every timer, but no time has passed.
END_OF_INPUT = 2**63 - 1

_encoder = msgspec.json.Encoder()


def user_key(tenant: str, user_id: str) -> str:
    return f"{tenant}\x00{user_id}"


class ParseEvent(ProcessFunction):
    """Validate each record; valid events go on keyed by user, invalid ones to dead letters."""

    def __init__(self, topic: str):
        self.topic = topic

    def process_element(self, row: Row, ctx: ProcessFunction.Context):
        key, raw, partition, offset = row[0], row[1], row[2], row[3]
        try:
            event = parse_record(raw)
        except InvalidEvent as exc:
            yield DEAD_LETTERS, Row(key, dead_letter(raw, str(exc), self.topic, partition, offset))
            return
        yield user_key(event.tenant, event.user_id), encode_event(event)


class EvaluateUser(KeyedBroadcastProcessFunction):
    """Per user: update the stats blob, evaluate the rules, emit the evaluation.

    One keyed-state read and one write per event. Rules arrive on the broadcast side; every
    change is also kept in broadcast state so that a restored job has the same rule set.
    With an `expire_after` in the catalogue, an event-time timer per user reports and clears
    users who went quiet (docs/semantics.md, "Expiry"); timers live in the keyed state backend
    and are checkpointed with it.
    """

    def __init__(self, stats_file: str, rules_file: str, rules_topic: str, mirror: bool):
        self.stats_file = stats_file
        self.rules_file = rules_file
        self.rules_topic = rules_topic
        self.mirror = mirror

    def open(self, runtime_context: RuntimeContext):
        catalogue = load_catalogue(self.stats_file)
        self.rules = load_rules(self.rules_file, catalogue)
        self.evaluator = Evaluator(catalogue, self.rules)
        self.user_state = runtime_context.get_state(USER_STATE)
        self.rules_version = 0
        self.restored = False
        self.subtask = runtime_context.get_index_of_this_subtask()

    def _restore_rules(self, broadcast_state) -> None:
        """After a restore, replay the kept rule changes over the rules from conf/."""
        if self.restored:
            return
        self.restored = True
        for rule_id, value in broadcast_state.items():
            if rule_id == VERSION_KEY:
                self.rules_version = int(value.decode())
            else:
                self.rules.apply_change(rule_id, value or None)

    def process_element(self, value, ctx: KeyedBroadcastProcessFunction.ReadOnlyContext):
        self._restore_rules(ctx.get_broadcast_state(RULE_CHANGES))
        event = decode_event(value[1])  # validated upstream
        result = self.evaluator.process(self.user_state.value(), event)
        self.user_state.update(result.blob)
        if result.expiry is not None:
            yield EXPIRATIONS, Row(event.user_id, _encoder.encode(result.expiry).decode())
        if result.timer is not None:
            ctx.timer_service().register_event_time_timer(result.timer)
        evaluation = result.evaluation
        evaluation["rules_version"] = self.rules_version
        payload = _encoder.encode(evaluation).decode()
        yield Row(event.user_id, payload)
        if self.mirror:
            yield MIRROR, (value[1].decode(), payload)

    def on_timer(self, timestamp: int, ctx: KeyedBroadcastProcessFunction.OnTimerContext):
        if ctx.timer_service().current_watermark() >= END_OF_INPUT:
            return
        blob = self.user_state.value()
        if blob is None:
            return
        tenant, user_id = ctx.get_current_key().split("\x00", 1)
        expired = self.evaluator.expire(blob, timestamp, tenant, user_id)
        if expired is not None:
            self.user_state.update(expired[0])
            yield EXPIRATIONS, Row(user_id, _encoder.encode(expired[1]).decode())

    def process_broadcast_element(self, row: Row, ctx: KeyedBroadcastProcessFunction.Context):
        state = ctx.get_broadcast_state(RULE_CHANGES)
        self._restore_rules(state)
        key, value, partition, offset = row[0], row[1], row[2], row[3]
        rule_id = key.decode("utf-8", "replace") if key else ""
        reason = "rule record has no key (the rule id)" if not rule_id else self.rules.apply_change(rule_id, value)
        self.rules_version += 1
        state.put(VERSION_KEY, str(self.rules_version).encode())
        if reason is None:
            state.put(rule_id, value or b"")
        elif self.subtask == 0:  # every subtask receives the change; one of them reports it
            yield DEAD_LETTERS, Row(key, dead_letter(value or b"", f"rule: {reason}", self.rules_topic,
                                                     partition, offset))
