"""Kafka administration through the standard protocol: topics, end offsets, reading a topic whole."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from segstream.config import Settings
from segstream.errors import StackError


def topic_plan(settings: Settings) -> dict[str, int]:
    """Topic name -> partition count. Evaluations follow the events' partitioning; the window job's
    aggregates are spread by key (tenant/window/value) over as many partitions."""
    t = settings.kafka.topics
    n = settings.kafka.events_partitions
    return {t.events: n, t.evaluations: n, t.expirations: n, t.dead_letters: 1, t.rules: 1,
            t.rules_log: 1, t.erasures: 1,
            t.aggregates: n, t.alerts: 1, t.late_events: 1}


def topic_configs(settings: Settings) -> dict[str, str]:
    """Configs of the topics segstream creates (see KafkaConfig.topic_retention_ms)."""
    return {"retention.ms": str(settings.kafka.topic_retention_ms)}


# The events topic's record timestamps are the broker's append times: the clock an event's ts is
# judged against before it may move event time (operators/event_time.py, docs/operations.md).
LOG_APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


def per_topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Configs of single topics, over topic_configs: the events topic on LogAppendTime."""
    return {settings.kafka.topics.events: dict(LOG_APPEND_TIME)}


def ensure_topics(bootstrap: str, plan: dict[str, int], timeout: float = 15.0,
                  configs: dict[str, str] | None = None, replication_factor: int = 1,
                  per_topic: dict[str, dict[str, str]] | None = None) -> None:
    """Create the topics of `plan` that do not exist yet (existing ones are left as they are, but for
    the configs of `per_topic`, which are set on them too: an upgrade puts the events topic of an
    existing deployment on LogAppendTime)."""
    per_topic = per_topic or {}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise StackError(f"Kafka at {bootstrap} is unreachable: {exc}") from None
    kept = [ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in per_topic[name].items()])
        for name in plan if name in existing and per_topic.get(name)]
    for resource, altered in (admin.incremental_alter_configs(kept) if kept else {}).items():
        try:
            altered.result(timeout)
        except KafkaException as exc:
            raise StackError(f"could not set the configs of topic {resource.name}: {exc}") from None
    wanted = [NewTopic(name, partitions, replication_factor, config={**(configs or {}), **per_topic.get(name, {})})
              for name, partitions in plan.items() if name not in existing]
    for name, future in (admin.create_topics(wanted) if wanted else {}).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StackError(f"could not create topic {name}: {exc}") from None


def timestamp_type(bootstrap: str, topic: str, timeout: float = 15.0) -> str | None:
    """The topic's message.timestamp.type (CreateTime or LogAppendTime); None if Kafka does not say
    (no DescribeConfigs permission, an old broker)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        entries = admin.describe_configs([resource])[resource].result(timeout)
    except KafkaException:
        return None
    entry = entries.get("message.timestamp.type")
    return None if entry is None else entry.value


def end_offsets(bootstrap: str, topic: str, timeout: float = 15.0) -> dict[int, int]:
    """The end offset (high watermark: offset of the last record or marker + 1) of every partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "segstream-end-offsets",
                         "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
        if metadata.error is not None:
            raise StackError(f"topic {topic}: {metadata.error}")
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
                for p in sorted(metadata.partitions)}
    finally:
        consumer.close()


@dataclass(frozen=True)
class Message:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp: int


def value_of(message: Message) -> bytes:
    """The value of a record from a topic whose records all have one (every topic but rules, where
    a record without a value deletes a rule)."""
    assert message.value is not None, f"partition {message.partition} offset {message.offset} has no value"
    return message.value


def read_topic(bootstrap: str, topic: str, timeout: float = 60, committed_only: bool = True) -> list[Message]:
    """Every record of `topic` up to its true end offsets, in partition then offset order.

    A partition is done at its EOF event at or past the end offset, not at a record there: the
    tail of a partition written by a transactional producer is a commit or abort marker, which
    has an offset but is never delivered.
    """
    ends = end_offsets(bootstrap, topic, timeout)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "segstream-reader", "enable.auto.commit": False,
                         "enable.partition.eof": True,
                         "isolation.level": "read_committed" if committed_only else "read_uncommitted"})
    pending = {p for p, end in ends.items() if end > 0}
    consumer.assign([TopicPartition(topic, p, 0) for p in pending])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while pending:
            if time.monotonic() > deadline:
                raise StackError(f"{topic}: partitions {sorted(pending)} not read to {ends} within {timeout}s")
            for m in consumer.consume(10_000, 0.5):
                error, partition, offset = m.error(), m.partition(), m.offset()
                if error:
                    if error.code() == KafkaError._PARTITION_EOF:
                        assert partition is not None and offset is not None  # an EOF event has both
                        if offset >= ends[partition]:
                            pending.discard(partition)
                    continue
                assert partition is not None and offset is not None  # so does every record
                messages.append(Message(m.key(), m.value(), partition, offset, m.timestamp()[1]))
    finally:
        consumer.close()
    return sorted(messages, key=lambda m: (m.partition, m.offset))
