"""Operator commands that change what the job holds: `segstream rules publish|delete` and
`segstream erase` (docs/security.md, "Rule ownership" and "Erasure"). Every record is signed with
the configured signing key as an operator (owner ""), so the job accepts it for any tenant.
"""

from __future__ import annotations

import json
import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from operators.ownership import signing_keys
from segstream.config import PROJECT_ROOT, Settings
from segstream.errors import StackError
from segstream.kafka_admin import end_offsets
from segstream.produce import erase_command, produce_records, signed_rule


def publish_rule(settings: Settings, rule: dict) -> str:
    """Publish one rule (a mapping with its `id`) to the rules topic, signed; the rule id."""
    rule_id = rule.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        raise StackError("a rule needs an `id`")
    keys = signing_keys(settings.ownership, PROJECT_ROOT)
    value = json.dumps(rule, ensure_ascii=False).encode("utf-8")
    produce_records(settings.kafka.bootstrap_servers, settings.kafka.topics.rules,
                    [signed_rule(keys, rule_id, value)], progress=False)
    return rule_id


def delete_rule(settings: Settings, rule_id: str) -> None:
    """A signed tombstone for `rule_id` on the rules topic."""
    keys = signing_keys(settings.ownership, PROJECT_ROOT)
    produce_records(settings.kafka.bootstrap_servers, settings.kafka.topics.rules,
                    [signed_rule(keys, rule_id, None)], progress=False)


def erase(settings: Settings, tenant: str, user_id: str, wait_s: float | None) -> dict | None:
    """Send a signed erase command for (tenant, user_id) and, with `wait_s`, wait that long for the
    job's acknowledgement on the erasures topic (None if it did not come)."""
    keys = signing_keys(settings.ownership, PROJECT_ROOT)
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    erasure_id = f"erase-{uuid.uuid4().hex}"
    starts = end_offsets(bootstrap, topics.erasures) if wait_s is not None else {}
    produce_records(bootstrap, topics.events, [erase_command(keys, tenant, user_id, erasure_id)], progress=False)
    if wait_s is None:
        return {"erasure_id": erasure_id, "status": "sent"}
    return wait_for_erasure(bootstrap, topics.erasures, erasure_id, starts, wait_s)


def wait_for_erasure(bootstrap: str, topic: str, erasure_id: str, starts: dict[int, int],
                     timeout_s: float) -> dict | None:
    """The acknowledgement of `erasure_id` on the erasures topic, read from `starts`; None after `timeout_s`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "segstream-erase", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in consumer.consume(100, 0.5):
                value = message.value()
                if message.error() is None and message.key() == erasure_id.encode() and value:
                    return json.loads(value)
        return None
    finally:
        consumer.close()
