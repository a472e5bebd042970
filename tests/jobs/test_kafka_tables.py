"""The Kafka table DDL the job runs: delivery guarantee, bounded offsets and client properties."""

from __future__ import annotations

import json

from jobs.kafka_tables import event_time_json, sink_ddl, source_ddl
from segstream.config import Settings


def settings(**kafka) -> Settings:
    return Settings(kafka=kafka)


def test_client_properties_reach_sources_and_sinks_only_where_meant():
    s = settings(source_properties={"security.protocol": "SASL_SSL", "fetch.max.wait.ms": "50"},
                 sink_properties={"linger.ms": "5"})
    source = source_ddl("events_source", "events", s, "events", None)
    sink = sink_ddl("evaluations_sink", "evaluations", s, "STRING", "STRING", transactional=True)
    assert "'properties.security.protocol' = 'SASL_SSL'" in source and "'properties.fetch.max.wait.ms' = '50'" in source
    assert "'properties.linger.ms' = '5'" in sink and "linger.ms" not in source and "fetch.max" not in sink


def test_exactly_once_only_on_transactional_sinks():
    s = settings(delivery_guarantee="exactly-once", transactional_id_prefix="app", transaction_timeout_ms=900_000,
                 transaction_naming_strategy="POOLING")
    evaluations = sink_ddl("evaluations_sink", "evaluations", s, "STRING", "STRING", transactional=True)
    dead_letters = sink_ddl("dead_letters_sink", "dead-letters", s, "BYTES", "BYTES", transactional=False)
    assert "'sink.delivery-guarantee' = 'exactly-once'" in evaluations
    assert "'sink.transactional-id-prefix' = 'app-evaluations_sink'" in evaluations
    assert "'properties.transaction.timeout.ms' = '900000'" in evaluations
    assert "'sink.transaction-naming-strategy' = 'POOLING'" in evaluations
    assert "'sink.delivery-guarantee' = 'at-least-once'" in dead_letters and "transactional" not in dead_letters


def test_bounded_source_stops_at_explicit_offsets_and_reads_committed():
    source = source_ddl("events_source", "events", settings(), "events", {1: 7, 0: 3})
    assert "'scan.bounded.specific-offsets' = 'partition:0,offset:3;partition:1,offset:7'" in source
    assert "'properties.isolation.level' = 'read_committed'" in source
    assert "scan.bounded" not in source_ddl("events_source", "events", settings(), "events", None)


def test_sources_declare_no_watermark_and_the_job_gets_its_event_time_options():
    """Watermarks run after parse-validate (io.segstream.flink.EventTime): a DDL watermark would be
    computed in the source, before any record is judged (issue 14, item 3)."""
    source = source_ddl("events_source", "events", settings(), "events", None)
    assert "WATERMARK" not in source.upper() and "record_ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'" in source
    s = Settings(events={"max_future_skew_ms": 1_234}, flink={"watermark_out_of_orderness_ms": 7,
                                                               "watermark_idleness_ms": 8})
    assert json.loads(event_time_json(s)) == {"max_future_skew_ms": 1_234, "out_of_orderness_ms": 7, "idleness_ms": 8}
