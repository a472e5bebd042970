"""Flink SQL DDL for the Kafka tables at the edges of the job.

Why tables and not the DataStream KafkaSource/KafkaSink: PyFlink's DataStream Kafka source only
offers value-only deserializers, but dead letters must name their source partition and offset,
and the Kafka sink must write the record key (user_id) apart from the value. The SQL Kafka
connector (a KafkaSource/KafkaSink underneath) exposes key, partition, offset and timestamp as
columns, stops at explicit offsets (`scan.bounded.mode`), and keeps all of it in the JVM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segstream.config import Settings

if TYPE_CHECKING:
    from pyflink.datastream import DataStream
    from pyflink.table import StreamTableEnvironment

# The columns every source table starts with, as the Java operators take them
# (= io.segstream.flink.Outputs.RECORD_TYPE).
RECORD_COLUMNS = ["record_key", "record_value", "record_partition", "record_offset"]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _with(options: dict[str, str]) -> str:
    return ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())


def _specific_offsets(ends: dict[int, int]) -> str:
    return ";".join(f"partition:{p},offset:{o}" for p, o in sorted(ends.items()))


def source_ddl(table: str, topic: str, settings: Settings, group_suffix: str,
               bounded_ends: dict[int, int] | None) -> str:
    """A Kafka source table: raw key and value bytes plus the record's metadata (partition, offset,
    timestamp, headers: a serving front names its reply topic in a header).

    No watermark here: one declared in the DDL is computed in the source, before any check, so a
    single record stamped in the far future moved its partition's watermark there (issue 14, item 3).
    The job's watermarks come from io.segstream.flink.EventTime, after parse-validate has refused
    such records (docs/security.md, "Event time you can trust"); the rules input has none.
    """
    kafka = settings.kafka
    options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": kafka.bootstrap_servers,
        "properties.group.id": f"{kafka.group_id}-{group_suffix}",
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": kafka.startup_mode,
        "key.format": "raw",
        "key.fields": "record_key",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
    }
    options.update({f"properties.{k}": v for k, v in kafka.source_properties.items()})
    if bounded_ends is not None:
        # The end offsets found when the job was built: a bounded run reads exactly what was there.
        options["scan.bounded.mode"] = "specific-offsets"
        options["scan.bounded.specific-offsets"] = _specific_offsets(bounded_ends)
    return f"""CREATE TEMPORARY TABLE {table} (
  record_key BYTES,
  record_value BYTES,
  record_partition INT METADATA FROM 'partition' VIRTUAL,
  record_offset BIGINT METADATA FROM 'offset' VIRTUAL,
  record_headers MAP<STRING, BYTES> METADATA FROM 'headers' VIRTUAL,
  record_ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'
) WITH (
  {_with(options)}
)"""


def event_time_json(settings: Settings) -> str:
    """io.segstream.flink.EventTimeOptions as JSON: events.max_future_skew_ms and the watermarks'."""
    import json

    return json.dumps({"max_future_skew_ms": settings.events.max_future_skew_ms,
                       "out_of_orderness_ms": settings.flink.watermark_out_of_orderness_ms,
                       "idleness_ms": settings.flink.watermark_idleness_ms})


def require_log_append_time(settings: Settings) -> None:
    """Refuse to build a job on an events topic stamped by its producers (CreateTime): the record
    timestamp would be the producer's claim, and the future-skew check would judge ts against
    itself. A topic whose config Kafka does not show (no DescribeConfigs permission) is taken with
    a warning. `segstream stack provision` sets it (docs/operations.md)."""
    import sys

    from segstream.kafka_admin import timestamp_type

    topic = settings.kafka.topics.events
    kind = timestamp_type(settings.kafka.bootstrap_servers, topic)
    if kind is None:
        print(f"warning: could not read message.timestamp.type of topic {topic}; it must be LogAppendTime "
              "(docs/operations.md)", file=sys.stderr)
    elif kind != "LogAppendTime":
        raise SystemExit(f"topic {topic} has message.timestamp.type={kind}: the job judges event times against "
                         "the broker's append time, so it must be LogAppendTime. Run `segstream stack provision`, "
                         f"or kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config "
                         "message.timestamp.type=LogAppendTime (docs/operations.md)")


def sink_ddl(table: str, topic: str, settings: Settings, key_type: str, value_type: str,
             transactional: bool) -> str:
    """A Kafka sink table writing column `k` as the record key and `v` as the value."""
    kafka = settings.kafka
    options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": kafka.bootstrap_servers,
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        # Kafka's default partitioner hashes the key: evaluations land like the events they answer.
        "sink.partitioner": "default",
    }
    if transactional and kafka.delivery_guarantee == "exactly-once":
        options["sink.delivery-guarantee"] = "exactly-once"
        options["sink.transactional-id-prefix"] = f"{kafka.transactional_id_prefix}-{table}"
        options["properties.transaction.timeout.ms"] = str(kafka.transaction_timeout_ms)
        options["sink.transaction-naming-strategy"] = kafka.transaction_naming_strategy
    else:
        options["sink.delivery-guarantee"] = "at-least-once"
    options.update({f"properties.{k}": v for k, v in kafka.sink_properties.items()})
    return f"""CREATE TEMPORARY TABLE {table} (
  k {key_type},
  v {value_type}
) WITH (
  {_with(options)}
)"""


def create_tables(t_env: StreamTableEnvironment, settings: Settings, bounded: bool) -> None:
    """The job's edge tables: sources `events_source` and `rules_source`, sinks `evaluations_sink`,
    `expirations_sink` (transactional with exactly-once), `dead_letters_sink` and `rules_log_sink`. Bounded: the
    sources stop at the end offsets found now."""
    from segstream.kafka_admin import end_offsets

    topics = settings.kafka.topics

    def ends(topic: str) -> dict[int, int] | None:
        return end_offsets(settings.kafka.bootstrap_servers, topic) if bounded else None

    t_env.execute_sql(source_ddl("events_source", topics.events, settings, "events", ends(topics.events)))
    t_env.execute_sql(source_ddl("rules_source", topics.rules, settings, "rules", ends(topics.rules)))
    t_env.execute_sql(sink_ddl("evaluations_sink", topics.evaluations, settings, "STRING", "STRING",
                               transactional=True))
    t_env.execute_sql(sink_ddl("expirations_sink", topics.expirations, settings, "STRING", "STRING",
                               transactional=True))
    t_env.execute_sql(sink_ddl("dead_letters_sink", topics.dead_letters, settings, "BYTES", "BYTES",
                               transactional=False))
    # The versioned rule log (docs/batch.md): entries are keyed by version, so copies are harmless.
    t_env.execute_sql(sink_ddl("rules_log_sink", topics.rules_log, settings, "STRING", "STRING",
                               transactional=False))


def create_window_tables(t_env: StreamTableEnvironment, settings: Settings, bounded: bool) -> None:
    """The window job's edge tables (jobs/windows.py): source `window_events_source` (the events
    topic, its own consumer group `windows.group_suffix`), sinks `aggregates_sink`, `alerts_sink`
    and `late_events_sink` (create_window_sinks). Their transactional ids `{prefix}-aggregates_sink-…`
    are those of the main job's window sinks: never run both (jobs/windows.py refuses to start
    while `windows.enabled` is true)."""
    from segstream.kafka_admin import end_offsets

    topics = settings.kafka.topics
    ends = end_offsets(settings.kafka.bootstrap_servers, topics.events) if bounded else None
    t_env.execute_sql(source_ddl("window_events_source", topics.events, settings, settings.windows.group_suffix,
                                 ends))
    create_window_sinks(t_env, settings)


def create_window_sinks(t_env: StreamTableEnvironment, settings: Settings) -> None:
    """Sinks `aggregates_sink`, `alerts_sink` and `late_events_sink`, transactional with
    exactly-once: of the main job with `windows.enabled`, or of the standalone window job."""
    topics = settings.kafka.topics
    for table, topic in (("aggregates_sink", topics.aggregates), ("alerts_sink", topics.alerts),
                         ("late_events_sink", topics.late_events)):
        t_env.execute_sql(sink_ddl(table, topic, settings, "STRING", "STRING", transactional=True))


# The header in which a serving front names its reply topic (serving/front.py REPLY_HEADER).
REPLY_HEADER = "segstream-reply"


def event_stream(t_env: StreamTableEnvironment, table: str, signed: bool = False) -> DataStream:
    """An events source table's records as io.segstream.flink.Outputs.EVENT_RECORD_TYPE rows:
    RECORD_COLUMNS, the reply topic (header) and the record timestamp, which on the events topic
    (LogAppendTime) is the broker's append time, the clock parse-validate judges ts against. With
    `signed`, a seventh column (Outputs.CONTROL_RECORD_TYPE): the segstream-signature header, which
    marks a control record (an erase command, operators/erasure.py)."""
    from pyflink.common import Types

    from operators.ownership import HEADER

    raw = Types.PRIMITIVE_ARRAY(Types.BYTE())
    names = [*RECORD_COLUMNS, "reply_to", "record_time"]
    types = [raw, raw, Types.INT(), Types.LONG(), raw, Types.INSTANT()]
    query = (f"SELECT {', '.join(RECORD_COLUMNS)}, record_headers['{REPLY_HEADER}'] AS reply_to, "
             "record_ts AS record_time")
    if signed:
        names.append("signature")
        types.append(raw)
        query += f", record_headers['{HEADER}'] AS signature"
    return t_env.to_append_stream(t_env.sql_query(f"{query} FROM {table}"), Types.ROW_NAMED(names, types))


def rule_stream(t_env: StreamTableEnvironment, table: str) -> DataStream:
    """The rules source table's records as io.segstream.flink.Outputs.RULE_RECORD_TYPE rows:
    RECORD_COLUMNS and the segstream-signature header (docs/security.md, "Rule ownership")."""
    from pyflink.common import Types

    from operators.ownership import HEADER

    raw = Types.PRIMITIVE_ARRAY(Types.BYTE())
    row_type = Types.ROW_NAMED([*RECORD_COLUMNS, "signature"], [raw, raw, Types.INT(), Types.LONG(), raw])
    query = f"SELECT {', '.join(RECORD_COLUMNS)}, record_headers['{HEADER}'] AS signature FROM {table}"
    return t_env.to_append_stream(t_env.sql_query(query), row_type)


def record_stream(t_env: StreamTableEnvironment, table: str) -> DataStream:
    """A source table's records as a DataStream of RECORD_COLUMNS rows, to hand to a Java operator."""
    from pyflink.common import Types

    raw = Types.PRIMITIVE_ARRAY(Types.BYTE())
    row_type = Types.ROW_NAMED(RECORD_COLUMNS, [raw, raw, Types.INT(), Types.LONG()])
    return t_env.to_append_stream(t_env.sql_query(f"SELECT {', '.join(RECORD_COLUMNS)} FROM {table}"), row_type)
