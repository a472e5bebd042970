"""The local Apache Kafka broker (segstream/kafka_broker.py): start-up, transactions as the
exactly-once sink uses them, durable and fresh storage, and its failures as one-line errors."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from segstream.errors import StackError
from segstream.jvm import KAFKA_LIB_DIR
from segstream.kafka_admin import end_offsets, ensure_topics, read_topic
from segstream.kafka_broker import BrokerOptions, KafkaBroker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def options(tmp_path: Path, **overrides) -> BrokerOptions:
    values = dict(lib_dir=KAFKA_LIB_DIR, state_dir=tmp_path, port=free_port(), controller_port=None,
                  heap="256m", transaction_max_timeout_ms=3_600_000, start_timeout_s=90)
    values.update(overrides)
    return BrokerOptions(**values)


@pytest.fixture
def broker(tmp_path):
    created: list[KafkaBroker] = []

    def start(durable: bool = False, **overrides) -> KafkaBroker:
        b = KafkaBroker(options(tmp_path, **overrides))
        created.append(b)
        b.start(durable)
        return b

    yield start
    for b in created:
        b.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_transactions_commit_and_abort_as_read_committed_consumers_expect(broker):
    b = broker()
    bootstrap = f"127.0.0.1:{b.o.port}"
    ensure_topics(bootstrap, {"t": 2})
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"test-{uuid.uuid4()}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce("t", key=b"k", value=b"committed")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce("t", key=b"k", value=b"aborted")
    producer.flush(30)  # written to the log, then aborted (unflushed records would just be purged)
    producer.abort_transaction(30)

    committed = [m.value for m in read_topic(bootstrap, "t", timeout=60, committed_only=True)]
    everything = [m.value for m in read_topic(bootstrap, "t", timeout=60, committed_only=False)]
    assert committed == [b"committed"]
    assert everything == [b"committed", b"aborted"]
    # The end offset counts the commit and abort markers too.
    assert sum(end_offsets(bootstrap, "t").values()) == 4


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_open_transaction_holds_read_committed_consumers_until_it_ends(broker):
    b = broker()
    bootstrap = f"127.0.0.1:{b.o.port}"
    ensure_topics(bootstrap, {"t": 1})
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"test-{uuid.uuid4()}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce("t", value=b"pending")
    producer.flush(30)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "g", "isolation.level": "read_committed",
                         "enable.partition.eof": True})
    consumer.assign([TopicPartition("t", 0, 0)])
    try:
        deadline = time.monotonic() + 60  # the first answer (assignment, fetch) can be slow on a loaded machine
        while (seen := consumer.poll(1)) is None:
            assert time.monotonic() < deadline, "the consumer got no answer at all"
        # The first thing read_committed sees is the end of the partition, not the pending record.
        assert seen.error() and seen.error().code() == KafkaError._PARTITION_EOF, seen.value()
        producer.commit_transaction(30)
        deadline = time.monotonic() + 60
        while (m := consumer.poll(1)) is None or m.error():
            assert time.monotonic() < deadline, "the committed record never arrived"
        assert m.value() == b"pending"
    finally:
        consumer.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_durable_storage_survives_a_restart_and_fresh_storage_does_not(broker, tmp_path):
    b = broker(durable=True)
    bootstrap = f"127.0.0.1:{b.o.port}"
    ensure_topics(bootstrap, {"kept": 1})
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce("kept", value=b"v")
    producer.flush(30)
    b.stop()

    b.start(durable=True)
    assert [m.value for m in read_topic(bootstrap, "kept", timeout=60)] == [b"v"]
    b.stop()

    b.start(durable=False)
    with pytest.raises(StackError, match="kept"):
        end_offsets(bootstrap, "kept", timeout=5)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_topics_keep_old_event_times(broker):
    """Record timestamps are event times: with the broker's default time retention (7 days) a
    segment of older events is deleted within minutes, so segstream's topics are created with
    kafka.topic_retention_ms (-1 by default)."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    from segstream.config import Settings
    from segstream.kafka_admin import topic_configs

    b = broker()
    bootstrap = f"127.0.0.1:{b.o.port}"
    ensure_topics(bootstrap, {"events": 1}, configs=topic_configs(Settings()))
    resource = ConfigResource(ConfigResource.Type.TOPIC, "events")
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the answer is in
    described = admin.describe_configs([resource])[resource].result(30)
    assert described["retention.ms"].value == "-1"

    # The events topic on LogAppendTime (docs/operations.md): set on creation, and on an existing
    # CreateTime topic (an upgrade), by the same idempotent call.
    from segstream.kafka_admin import per_topic_configs, timestamp_type

    settings = Settings(kafka={"topics": {"events": "events2"}})
    ensure_topics(bootstrap, {"events2": 1}, configs=topic_configs(settings))
    assert timestamp_type(bootstrap, "events2") == "CreateTime"
    for _ in range(2):
        ensure_topics(bootstrap, {"events2": 1, "fresh": 1}, configs=topic_configs(settings),
                      per_topic={**per_topic_configs(settings), "fresh": {"message.timestamp.type": "LogAppendTime"}})
        assert timestamp_type(bootstrap, "events2") == timestamp_type(bootstrap, "fresh") == "LogAppendTime"
    assert timestamp_type(bootstrap, "events") == "CreateTime"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_taken_port_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StackError) as error:
            KafkaBroker(options(tmp_path, port=port)).start(durable=False)
    assert f"127.0.0.1:{port} is taken" in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_broker_late_for_its_deadline_is_stopped_and_its_log_shown(tmp_path):
    b = KafkaBroker(options(tmp_path, start_timeout_s=0.5))
    with pytest.raises(StackError) as error:
        b.start(durable=False)
    assert "did not answer" in str(error.value)
    assert "last lines of" in str(error.value)
    assert b.service.pid() is None


def test_a_missing_runtime_says_how_to_build_it(tmp_path):
    with pytest.raises(StackError, match="scripts/setup.sh"):
        KafkaBroker(options(tmp_path, lib_dir=tmp_path / "nothing")).start(durable=False)


def test_cluster_ids_never_start_with_a_dash():
    from segstream.kafka_broker import _cluster_id

    ids = [_cluster_id() for _ in range(5_000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
