"""segstream's main job: per-user statistics and segment rules on every event.

    Kafka `events` ──► parse-validate ──► key_by(tenant, user) ──► evaluate-user ──► Kafka `evaluations`
                          │ invalid                                 ▲   │ (RocksDB keyed state)
                          ▼                                         │   └──► Bigtable mirror (events, profiles)
                 Kafka `dead-letters` ◄── invalid rules ◄── Kafka `rules` (broadcast)

Run on the embedded MiniCluster with `python jobs/user_stats.py [--bounded]`, or submit unchanged
with `flink run -py jobs/user_stats.py` (see README, Operations).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# `flink run -py` executes this file as a script: make the project packages importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyflink.common import Types  # noqa: E402
from pyflink.datastream import StreamExecutionEnvironment  # noqa: E402
from pyflink.table import StreamTableEnvironment  # noqa: E402

from jobs import kafka_tables, timer_safe  # noqa: E402
from jobs.flink_env import create_environments  # noqa: E402
from jobs.functions import (  # noqa: E402
    DEAD_LETTERS,
    EVALUATION_TYPE,
    EXPIRATIONS,
    KEYED_EVENT_TYPE,
    MIRROR,
    RULE_CHANGES,
    EvaluateUser,
    ParseEvent,
)
from segstream.config import Settings, load_settings  # noqa: E402
from segstream.jvm import require  # noqa: E402

JOB_NAME = "segstream-user-stats"


def build(env: StreamExecutionEnvironment, t_env: StreamTableEnvironment, settings: Settings,
          bounded: bool) -> None:
    topics = settings.kafka.topics
    kafka_tables.create_tables(t_env, settings, bounded)

    records = t_env.to_data_stream(t_env.sql_query(
        "SELECT record_key, record_value, record_partition, record_offset FROM events_source"))
    parsed = (records.process(ParseEvent(topics.events), output_type=KEYED_EVENT_TYPE)
              .name("parse-validate").uid("parse-validate"))

    rule_changes = t_env.to_data_stream(t_env.sql_query(
        "SELECT record_key, record_value, record_partition, record_offset FROM rules_source"))
    mirror = settings.bigtable.enabled
    evaluated = (parsed.key_by(lambda e: e[0], key_type=Types.STRING())
                 .connect(rule_changes.broadcast(RULE_CHANGES))
                 .process(EvaluateUser(str(settings.path(settings.stats_file)),
                                       str(settings.path(settings.rules_file)),
                                       topics.rules, mirror),
                          output_type=EVALUATION_TYPE)
                 .name("evaluate-user").uid("evaluate-user"))

    dead_letters = parsed.get_side_output(DEAD_LETTERS).union(evaluated.get_side_output(DEAD_LETTERS))
    if mirror:
        from jobs.bigtable_sink import attach_bigtable_sink

        attach_bigtable_sink(evaluated.get_side_output(MIRROR), settings.bigtable)

    statements = t_env.create_statement_set()
    statements.add_insert("evaluations_sink", t_env.from_data_stream(evaluated))
    statements.add_insert("expirations_sink", t_env.from_data_stream(evaluated.get_side_output(EXPIRATIONS)))
    statements.add_insert("dead_letters_sink", t_env.from_data_stream(dead_letters))
    statements.attach_as_datastream()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bounded", action="store_true",
                        help="stop at the end offsets of the topics found when the job starts")
    parser.add_argument("--savepoint", help="start from this savepoint or retained checkpoint")
    parser.add_argument("--config", help="YAML configuration (default conf/segstream.yaml)")
    args = parser.parse_args(argv)

    settings = load_settings(args.config)
    bounded = args.bounded or settings.bounded
    # segstream's operator with the Kafka connector (jvm/job), built by scripts/setup.sh.
    jars = [require(settings.path(settings.flink.job_jar), "the job jar")]
    env, t_env = create_environments(settings, jars, args.savepoint)
    build(env, t_env, settings, bounded)
    # Expiry timers must be in every checkpoint: see jobs/timer_safe.py.
    timer_safe.execute(env, JOB_NAME)


if __name__ == "__main__":
    main()
