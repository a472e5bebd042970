"""The peer: segstream's per-user evaluation as a Quix Streams application (one process, RocksDB).

    Kafka `events` ──► Quix StreamingDataFrame: stateful apply ──► Kafka `<peer>-evaluations`
                        (segstream's Python engine,        ├──► Kafka `<peer>-dead-letters`
                         the user's blob in RocksDB)        └──► Kafka `<peer>-expirations`

What it runs per record is segstream's own engine, not a rewrite: `parse_record` validates it
(invalid ones become the same dead letter the job writes), `Evaluator.process` turns (the user's
state blob, the event) into (the new blob, the evaluation), with the catalogue and rules loaded
the way jobs/functions.py loads them. The blob lives in Quix's RocksDB state, under the message
key (the user_id the producer keys events by) and, inside it, the tenant and user_id of the event
(the job's key). Its outputs are therefore the job's outputs, event for event, and a comparison
of the two measures the frameworks around the engine: Quix Streams + the Python engine in one
process against the Flink job (JVM + Python workers).

What the peer does not do, and the job does:
- run-time rule changes (the job's broadcast `rules` topic): the peer keeps the rules of the file
  (`rules_version` 0, as the job's is before any change);
- expiry timers: Quix Streams has no per-key event-time timers, so a user who goes quiet for
  `expire_after` is reported (and starts afresh) at their next event, which `Evaluator.process`
  does by itself; one who never comes back is never reported. Evaluations are the same either way.
- the Bigtable mirror (off in the benchmarks too).

Delivery: at-least-once (the job's default), Quix's checkpoints every `--commit-interval` s
(flush the producer, write the RocksDB batch and its changelog topic, commit the offsets).

Runs in its own virtualenv (bench/peers/requirements.txt): Quix Streams 3.28.1 requires
confluent-kafka < 2.13, segstream pins 2.16.1. `--bounded` stops at the input's end offsets found
at start, like the job's `--bounded`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Consumer, TopicPartition
from quixstreams import Application, State, message_context
from quixstreams.state.rocksdb import RocksDBOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from operators.catalogue import load_catalogue  # noqa: E402
from operators.evaluator import Evaluator  # noqa: E402
from operators.events import InvalidEvent, dead_letter, parse_record  # noqa: E402
from operators.rules import load_rules  # noqa: E402

_encoder = msgspec.json.Encoder()


class DeadLetter(bytes):
    """A dead-letter payload (routes the value to the dead-letter topic)."""


class Expiry(bytes):
    """An expiry record's payload (routes the value to the expirations topic)."""


def _identity(value: bytes) -> bytes:
    return value


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "quix-peer-ends"})
    try:
        partitions = consumer.list_topics(topic, timeout=15).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1] for p in partitions}
    finally:
        consumer.close()


def build(args: argparse.Namespace, on_message_processed: Callable[[str, int, int], None] | None = None
          ) -> Application:
    catalogue = load_catalogue(args.stats)
    evaluator = Evaluator(catalogue, load_rules(args.rules, catalogue))
    rules_version = 0  # no run-time rule changes here (module docstring)
    process = evaluator.process

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        # The blob is msgpack bytes already: store it as it is (the default would JSON-encode it).
        rocksdb_options=RocksDBOptions(dumps=_identity, loads=_identity),
        processing_guarantee="at-least-once",
        # Java's default partitioner (murmur2), as the job's Kafka sink uses: outputs land in the
        # same partitions as the job's.
        producer_extra_config={"partitioner": "murmur2_random", "linger.ms": 20},
        loglevel=args.loglevel,
        on_message_processed=on_message_processed,
    )
    raw = {"value_deserializer": "bytes", "key_deserializer": "bytes",
           "value_serializer": "bytes", "key_serializer": "bytes"}
    events = app.topic(args.input, **raw)
    evaluations = app.topic(args.evaluations, **raw)
    dead_letters = app.topic(args.dead_letters, **raw)
    expirations = app.topic(args.expirations, **raw)

    def evaluate(value: bytes, key: bytes | None, timestamp: int, headers: Any, state: State) -> list[bytes]:
        try:
            event = parse_record(value)
        except InvalidEvent as exc:
            ctx = message_context()
            return [DeadLetter(dead_letter(value, str(exc), args.input, ctx.partition, ctx.offset))]
        # State is scoped by the message key; inside it, by the job's key (tenant, user_id).
        user = f"{event.tenant}\x00{event.user_id}".encode()
        result = process(state.get(user), event, {"rules_version": rules_version})
        if result.duplicate:  # a retry: evaluated once already, and the peer has no reply path
            return []
        state.set(user, result.blob)
        out = [_encoder.encode(result.evaluation)]
        if result.expiry is not None:
            out.insert(0, Expiry(_encoder.encode(result.expiry)))
        return out

    def route(value: bytes, key: Any, timestamp: int, headers: Any):
        if type(value) is DeadLetter:
            return dead_letters
        return expirations if type(value) is Expiry else evaluations

    sdf = app.dataframe(events)
    sdf = sdf.apply(evaluate, stateful=True, metadata=True, expand=True)
    sdf.to_topic(route)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True, help="the events topic")
    parser.add_argument("--evaluations", required=True)
    parser.add_argument("--dead-letters", required=True)
    parser.add_argument("--expirations", required=True)
    parser.add_argument("--group", default="quix-peer")
    parser.add_argument("--state-dir", default="state")
    parser.add_argument("--stats", default="conf/stats.yaml")
    parser.add_argument("--rules", default="conf/rules.yaml")
    parser.add_argument("--commit-interval", type=float, default=5.0)
    parser.add_argument("--loglevel", default="WARNING")
    parser.add_argument("--bounded", action="store_true",
                        help="stop at the end offsets of the input found at start")
    args = parser.parse_args(argv)

    app: Application | None = None
    stop_at_end: Callable[[str, int, int], None] | None = None
    if args.bounded:
        ends = {p: end for p, end in end_offsets(args.bootstrap, args.input).items() if end > 0}
        if not ends:
            return
        remaining = set(ends)

        def processed(topic: str, partition: int, offset: int) -> None:
            if offset + 1 >= ends.get(partition, 0):
                remaining.discard(partition)
                if not remaining and app is not None:
                    app.stop()  # the loop ends after this message; the last checkpoint is committed

        stop_at_end = processed

    app = build(args, stop_at_end)
    started = time.monotonic()
    app.run()
    print(f"quix peer: {time.monotonic() - started:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
