"""segstream's main job: per-user statistics and segment rules on every event.

    Kafka `events` ──► parse-validate ──► key_by(tenant, user) ──► evaluate-user ──► Kafka `evaluations`
                          │ invalid                                 ▲   │ (RocksDB keyed state)
                          ▼                                         │   ├──► Kafka `expirations`
                 Kafka `dead-letters` ◄── invalid rules ◄── Kafka `rules` (broadcast)
                          ▲                                             │ mirror (bigtable.enabled)
                          └──── rows Bigtable cannot take ◄── bigtable-rows ──► bigtable-sink
                          │ valid events × window definitions (windows.enabled: Pipeline.attachWindows)
                          ▼
    windows-preaggregate ──► key_by(definition, tenant, value) ──► windows-aggregate ──► Kafka `aggregates`,
    (chained, stateless)                                          (event-time timers)    `alerts`, `late-events`

No Python runs per record: the operators are Java (jvm/job, io.segstream.flink.Pipeline, running
the JVM engine of jvm/engine). This script only declares the Kafka tables (jobs/kafka_tables.py),
hands their streams to the Pipeline over py4j (jobs/jvm_bridge.py) and the Java streams back to
the sink tables. The Python engine (operators/) is the reference the JVM engine is tested against
(tests/segstream/test_differential.py).

Run on the embedded MiniCluster with `python jobs/user_stats.py [--bounded]`, or submit unchanged
with `flink run -py jobs/user_stats.py` (see README, Operations).

With `bigtable.enabled` every evaluated event is mirrored to Bigtable by a Java Sink V2
(io.segstream.flink.BigtableSink, docs/bigtable.md). The tables must exist (`segstream stack up`,
or sinks.bigtable.schema.ensure_tables): the job writes rows, it does not administer tables.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

# `flink run -py` executes this file as a script: make the project packages importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402
from pyflink.datastream import StreamExecutionEnvironment  # noqa: E402
from pyflink.table import StreamTableEnvironment  # noqa: E402

from jobs import kafka_tables  # noqa: E402
from jobs.flink_env import job_arguments, job_environments  # noqa: E402
from jobs.jvm_bridge import insert_streams, java_class, java_stream  # noqa: E402
from jobs.windows import window_sinks  # noqa: E402
from operators import ownership  # noqa: E402
from segstream.config import PROJECT_ROOT, Settings, load_settings  # noqa: E402
from segstream.windows import definitions, definitions_json  # noqa: E402

JOB_NAME = "segstream-user-stats"
PIPELINE = "io.segstream.flink.Pipeline"

# The header in which a serving front names its reply topic (serving/front.py REPLY_HEADER).
REPLY_HEADER = kafka_tables.REPLY_HEADER


def catalogue_json(settings: Settings) -> str:
    """conf/stats.yaml as JSON (Catalogue.parseJson takes the same structure)."""
    return json.dumps(yaml.safe_load(settings.path(settings.stats_file).read_text(encoding="utf-8")))


def rules_json(settings: Settings) -> str:
    """The initial rules of conf/rules.yaml (its `rules:` list) as a JSON array."""
    data = yaml.safe_load(settings.path(settings.rules_file).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("rules") or [], list):
        raise SystemExit(f"{settings.rules_file}: expected a mapping with a `rules:` list")
    return json.dumps(data.get("rules") or [])


def build(env: StreamExecutionEnvironment, t_env: StreamTableEnvironment, settings: Settings,
          bounded: bool) -> None:
    topics = settings.kafka.topics
    kafka_tables.create_tables(t_env, settings, bounded)

    events = kafka_tables.event_stream(t_env, "events_source", signed=True)
    rules = kafka_tables.rule_stream(t_env, "rules_source")
    keys = ownership.signing_keys(settings.ownership, PROJECT_ROOT)
    mirror = settings.bigtable.enabled
    # The catalogue and the initial rules are checked here, on the client (a Py4JJavaError names
    # the problem); the operators get them as JSON strings.
    kafka_tables.require_log_append_time(settings)
    pipeline = java_class(PIPELINE).build(java_stream(events), java_stream(rules), topics.events, topics.rules,
                                          catalogue_json(settings), rules_json(settings), mirror,
                                          json.dumps(dataclasses.asdict(settings.rule_limits)), json.dumps(keys),
                                          topics.erasures, kafka_tables.event_time_json(settings))
    if settings.pii.enabled:  # parse-validate redacts before anything else sees an event (docs/security.md)
        pipeline.redactPii(settings.pii.policy().to_json())
    if mirror:  # before deadLetters(): rows Bigtable cannot take are dead letters too
        b = settings.bigtable
        pipeline.attachBigtableSink(b.project, b.instance, b.events_table, b.profiles_table, b.hash_prefix_hex,
                                    b.emulator_host, b.give_up_after_s)

    # Answers for the serving fronts, at-least-once and outside any transaction (docs/serving.md), and
    # the acknowledgements of erasures on the erasures topic (no sink of their own: docs/security.md).
    pipeline.attachReplySink(settings.kafka.bootstrap_servers, settings.serving.reply_topic_prefix,
                             "\n".join(f"{k}={v}" for k, v in settings.kafka.sink_properties.items()))

    sinks = {"evaluations_sink": pipeline.evaluations(), "expirations_sink": pipeline.expirations(),
             "dead_letters_sink": pipeline.deadLetters(), "rules_log_sink": pipeline.ruleLog()}
    if settings.windows.enabled:
        # The window definitions are checked here too, on the client (pydantic, then WindowSpec).
        kafka_tables.create_window_sinks(t_env, settings)
        sinks.update(window_sinks(pipeline.attachWindows(definitions_json(definitions(settings)))))
    insert_streams(t_env, sinks)


def main(argv: list[str] | None = None) -> None:
    args = job_arguments(__doc__.splitlines()[0], argv)

    settings = load_settings(args.config)
    bounded = args.bounded or settings.bounded
    env, t_env = job_environments(settings, args.savepoint)
    build(env, t_env, settings, bounded)
    env.execute(JOB_NAME)


if __name__ == "__main__":
    main()
