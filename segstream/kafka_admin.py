"""Kafka administration through the standard protocol (works on Apache Kafka and the local broker)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from segstream.config import Settings
from segstream.errors import StackError

# Topics created without explicit configs report an empty config on the local broker, and some
# clients fail on that; an explicit retention keeps them happy (and is a sane default anyway).
RETENTION_MS = str(7 * 24 * 3600 * 1000)


def topic_plan(settings: Settings) -> dict[str, int]:
    """Topic name -> partition count. Evaluations follow the events' partitioning."""
    t = settings.kafka.topics
    n = settings.kafka.events_partitions
    return {t.events: n, t.evaluations: n, t.expirations: n, t.dead_letters: 1, t.rules: 1}


def ensure_topics(bootstrap: str, plan: dict[str, int], timeout: float = 15.0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise StackError(f"Kafka at {bootstrap} is unreachable: {exc}") from None
    wanted = [NewTopic(name, partitions, 1, config={"retention.ms": RETENTION_MS})
              for name, partitions in plan.items() if name not in existing]
    for name, future in (admin.create_topics(wanted) if wanted else {}).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StackError(f"could not create topic {name}: {exc}") from None


def end_offsets(bootstrap: str, topic: str, timeout: float = 15.0) -> dict[int, int]:
    """The true end offset (offset of the last record + 1) of every partition of `topic`.

    ListOffsets(LATEST) on the local broker returns the base offset of the last batch + 1, so we
    read the tail from there: the partition-EOF event arrives at the real end. On Apache Kafka the
    tail read returns nothing and EOF comes at the reported offset, so the result is the same.
    """
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "segstream-end-offsets",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": "read_uncommitted",
    })
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
        if metadata.error is not None:
            raise StackError(f"topic {topic}: {metadata.error}")
        ends: dict[int, int] = {}
        for partition in sorted(metadata.partitions):
            _, reported = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            if reported == 0:
                ends[partition] = 0
                continue
            consumer.assign([TopicPartition(topic, partition, reported - 1)])
            ends[partition] = _read_to_eof(consumer, topic, partition, timeout)
        return ends
    finally:
        consumer.close()


def _read_to_eof(consumer: Consumer, topic: str, partition: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                return message.offset()
            raise StackError(f"reading {topic}[{partition}]: {message.error()}")
    raise StackError(f"no end of {topic}[{partition}] within {timeout}s")


@dataclass(frozen=True)
class Message:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp: int


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
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF and m.offset() >= ends[m.partition()]:
                        pending.discard(m.partition())
                    continue
                messages.append(Message(m.key(), m.value(), m.partition(), m.offset(), m.timestamp()[1]))
    finally:
        consumer.close()
    return sorted(messages, key=lambda m: (m.partition, m.offset))
