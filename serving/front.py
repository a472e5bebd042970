"""The front's Kafka side: one producer for the events, one consumer of this instance's reply topic,
and the requests waiting for their answers.

Each instance has a reply topic of its own (`{reply_topic_prefix}{instance id}`), created at start
(or reused: a configured instance id keeps its topic across restarts). Every event it
produces carries the header `segstream-reply` naming that topic; the job writes the event's
evaluation there (key = event_id) besides `evaluations`. The consumer reads every partition of the
reply topic from the end offsets found at start (no consumer group: nothing to rebalance or commit)
and completes the waiting requests by event_id.

confluent-kafka's clients are blocking: the producer is polled and the consumer read on two daemon
threads. Each thread hands what one poll returned (acknowledgements, answers) to the event loop in
one call_soon_threadsafe, not one per record: every such call wakes the loop, and at a few thousand
requests a second the wake-ups cost more than the work (docs/benchmarks.md, "The tracking front").
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from segstream.config import Settings

log = logging.getLogger("segstream.serving")

# = jobs/user_stats.py REPLY_HEADER: the record header naming the reply topic.
REPLY_HEADER = "segstream-reply"


def instance_id(configured: str | None) -> str:
    """The configured id, else `{hostname}-{pid}`, reduced to the characters a topic name allows."""
    raw = configured or f"{socket.gethostname()}-{os.getpid()}"
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in raw)[:200]


class KafkaUnavailable(Exception):
    """Kafka did not take the event (unreachable, or no acknowledgement within the deadline).
    `acked`: of a batch, the event_ids Kafka did take."""

    def __init__(self, message: str, acked: list[str] | None = None):
        super().__init__(message)
        self.acked = acked or []


class Front:
    """Produce events and wait for their answers. `start()` in the event loop, `stop()` at the end."""

    def __init__(self, settings: Settings):
        self.settings = settings
        serving = settings.serving
        self.instance = instance_id(serving.instance_id)
        self.reply_topic = serving.reply_topic_prefix + self.instance
        self.events_topic = settings.kafka.topics.events
        self._reply_headers: list[tuple[str, str | bytes | None]] = [
            (REPLY_HEADER, self.reply_topic.encode("utf-8"))]
        # The same, for a record sent with headers of its own (an erase command: serving/app.py).
        self.reply_headers: tuple[tuple[str, bytes], ...] = ((REPLY_HEADER, self.reply_topic.encode("utf-8")),)
        self._common: dict[str, str | int | float | bool] = {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            # TCP_NODELAY, as Kafka's Java clients: a request waits on every produce and every answer,
            # and Nagle's algorithm can hold a small write until the previous one is acknowledged.
            "socket.nagle.disable": True,
            **serving.kafka_properties}
        # librdkafka's own log (a line a second per unreachable broker) goes to Python logging.
        self._clients: dict[str, Any] = {**self._common, "logger": log}
        self._waiters: dict[str, list[asyncio.Future[bytes]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = threading.Event()
        self.replies_ready = threading.Event()  # the consumer is assigned to the reply topic
        self.replies_received = 0
        self._threads: list[threading.Thread] = []
        # Acknowledgements collected during one producer poll: (future, error or None). Appended to
        # by the delivery callbacks, which librdkafka runs inside poll() on the polling thread.
        self._acks: list[tuple[asyncio.Future[None], KafkaError | None]] = []
        self.producer = Producer({
            **self._clients,
            "acks": "all",
            "enable.idempotence": True,
            # A request waits for its acknowledgement, so a long linger is latency; 0 would send
            # every event in a produce request of its own, each a unit of broker work. 1 ms batches
            # what arrives together under load (docs/benchmarks.md).
            "linger.ms": 1,
            **serving.producer_properties,
            # An event Kafka has not acknowledged within the deadline is reported failed (503).
            "message.timeout.ms": serving.deadline_ms,
            "socket.connection.setup.timeout.ms": max(1000, serving.deadline_ms),
        })

    # --- life cycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for target, name in ((self._poll_producer, "producer"), (self._read_replies, "replies")):
            thread = threading.Thread(target=target, name=f"serving-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the threads and flush the producer. The reply topic is kept (docs/serving.md: the
        job drops answers for missing topics only after it lists them again, so deleting a topic
        with answers still in flight could stall the job's reply sink); retention bounds its data."""
        self._stopped.set()
        for thread in self._threads:
            thread.join(10)
        self.producer.flush(5)
        self._hand_over_acks()  # the poll thread has ended: flush() ran the last callbacks here

    def _delivered(self, acked: asyncio.Future[None], err: KafkaError | None, _msg: object) -> None:
        """librdkafka's delivery callback, run inside poll() or flush(): noted, handed over after it."""
        self._acks.append((acked, err))

    def _hand_over_acks(self) -> None:
        if self._acks:
            acks, self._acks = self._acks, []
            self._call(_settle_acks, acks)

    def _poll_producer(self) -> None:
        while not self._stopped.is_set():
            self.producer.poll(0.1)
            self._hand_over_acks()

    def _ensure_reply_topic(self) -> list[int]:
        serving = self.settings.serving
        admin = AdminClient(self._clients)
        topics = admin.list_topics(timeout=5).topics
        if self.reply_topic not in topics:
            new = NewTopic(self.reply_topic, serving.reply_topic_partitions, 1,
                           config={"retention.ms": str(serving.reply_retention_ms)})
            try:
                admin.create_topics([new])[self.reply_topic].result(10)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            topics = admin.list_topics(self.reply_topic, timeout=5).topics
        return sorted(topics[self.reply_topic].partitions)

    def _read_replies(self) -> None:
        consumer = Consumer({**self._clients, "group.id": f"segstream-front-{self.instance}",
                             "enable.auto.commit": False, "auto.offset.reset": "latest",
                             # A safety net: how soon a partition taken for missing is looked up again.
                             "topic.metadata.refresh.interval.ms": 5000})
        try:
            while not self._stopped.is_set():  # until Kafka answers: the front starts without it
                try:
                    partitions = self._ensure_reply_topic()
                    # The consumer's own metadata must show the new topic with a leader for every
                    # partition: assigned before that, librdkafka can take the topic for missing and
                    # only look again at its next periodic metadata refresh (minutes).
                    metadata = consumer.list_topics(self.reply_topic, timeout=5).topics[self.reply_topic]
                    if metadata.error is not None or len(metadata.partitions) != len(partitions) or any(
                            p.leader < 0 or p.error is not None for p in metadata.partitions.values()):
                        raise KafkaException(f"no leader yet: {metadata.error or metadata.partitions}")
                    ends = [consumer.get_watermark_offsets(TopicPartition(self.reply_topic, p), timeout=5)[1]
                            for p in partitions]
                    consumer.assign([TopicPartition(self.reply_topic, p, end if end >= 0 else OFFSET_END)
                                     for p, end in zip(partitions, ends, strict=True)])
                    self.replies_ready.set()
                    break
                except Exception as exc:
                    log.warning("reply topic %s not ready: %s", self.reply_topic, exc)
                    self._stopped.wait(0.2)
            while not self._stopped.is_set():
                # poll() returns as soon as one record is there (consume(n, timeout) would wait for n
                # records or the whole timeout: 100 ms on every answer); then drain what else is there.
                first = consumer.poll(0.1)
                if first is None:
                    continue
                replies: list[tuple[str, bytes]] = []
                for message in [first, *consumer.consume(1000, 0)]:
                    key, value, error = message.key(), message.value(), message.error()
                    if error is not None:
                        log.warning("reply topic %s: %s", self.reply_topic, error)
                        continue
                    if key is None or value is None:
                        continue
                    replies.append((key.decode("utf-8", "replace"), value))
                if replies:
                    self.replies_received += len(replies)
                    self._call(self._complete, replies)
        finally:
            consumer.close()

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop closed meanwhile
                pass

    # --- requests ---------------------------------------------------------------------------------

    def _complete(self, replies: list[tuple[str, bytes]]) -> None:
        waiters = self._waiters
        for event_id, value in replies:
            for future in waiters.pop(event_id, ()):
                if not future.done():
                    future.set_result(value)

    def expect(self, event_id: str) -> asyncio.Future[bytes]:
        """A future completed with the evaluation of `event_id` from the reply topic (register it
        before producing: the answer can come before the acknowledgement)."""
        assert self._loop is not None, "Front.start() first"
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._waiters.setdefault(event_id, []).append(future)
        return future

    def forget(self, event_id: str, future: asyncio.Future[bytes]) -> None:
        waiting = self._waiters.get(event_id)
        if waiting and future in waiting:
            waiting.remove(future)
            if not waiting:
                del self._waiters[event_id]

    async def produce(self, key: str, value: bytes, timestamp: int, timeout: float) -> None:
        """Send one event to `events`, naming this instance's reply topic, and wait until Kafka
        acknowledged it (acks=all); raise KafkaUnavailable if it refuses or does not answer within
        `timeout` seconds."""
        await self.send(self.events_topic, key, value, timeout, timestamp=timestamp, headers=self._reply_headers)

    async def send(self, topic: str, key: str, value: bytes | None, timeout: float, timestamp: int = 0,
                   headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        """Send one record (value None: a tombstone) and wait for Kafka's acknowledgement, as produce()."""
        acked = self.submit(topic, key, value, timestamp, headers)
        try:
            async with asyncio.timeout(timeout):
                await acked
        except TimeoutError:
            raise KafkaUnavailable(f"no acknowledgement from Kafka within {timeout * 1000:.0f} ms") from None

    def submit(self, topic: str, key: str, value: bytes | None, timestamp: int = 0,
               headers: list[tuple[str, str | bytes | None]] | None = None) -> asyncio.Future[None]:
        """Hand one record to the producer; the future is done when Kafka acknowledged it, or failed
        with KafkaUnavailable (also raised at once if the producer refuses it)."""
        assert self._loop is not None
        acked: asyncio.Future[None] = self._loop.create_future()
        try:
            self.producer.produce(topic, value, key.encode("utf-8"), timestamp=timestamp, headers=headers,
                                  on_delivery=partial(self._delivered, acked))
        except (BufferError, KafkaException) as exc:
            raise KafkaUnavailable(str(exc)) from None
        return acked

    def submit_event(self, key: str, value: bytes, timestamp: int) -> asyncio.Future[None]:
        """submit() one event to `events`, naming this instance's reply topic."""
        return self.submit(self.events_topic, key, value, timestamp, self._reply_headers)

    def kafka_reachable(self, timeout: float = 2.0) -> bool:
        """Whether the cluster answers a metadata request for the events topic (blocking)."""
        try:
            topic = self.producer.list_topics(self.events_topic, timeout=timeout).topics.get(self.events_topic)
            return topic is not None and topic.error is None
        except KafkaException:
            return False


def _settle_acks(acks: list[tuple[asyncio.Future[None], KafkaError | None]]) -> None:
    """On the event loop: complete the acknowledgement futures of one producer poll."""
    for acked, err in acks:
        if acked.done():  # its request gave up waiting
            continue
        if err is None:
            acked.set_result(None)
        else:
            acked.set_exception(KafkaUnavailable(str(err)))


def monotonic_ms() -> float:
    return time.monotonic() * 1000
