"""The framework floor: jobs/user_stats.py's pipeline shape with a trivial keyed function.

    Kafka `events` ──► key_by(record key = user_id) ──► count (RocksDB ValueState<Long>) ──► Kafka `evaluations`

The same Kafka source table (jobs/kafka_tables.py), parallelism, state backend and checkpointing
as the job; the keyed function (io.segstream.flink.bench.FloorPipeline, in the job jar) keeps one
counter per user and writes one (user_id, count) row per record to an evaluations sink table. What
the job spends beyond this floor is segstream's own per-event work (parse, engine, JSON).
bench/peers/compare.py runs it next to the job and the Quix Streams peer:

    .venv/bin/python bench/floor_job.py --bounded      # settings as for jobs/user_stats.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs import kafka_tables  # noqa: E402
from jobs.flink_env import job_environments  # noqa: E402
from jobs.jvm_bridge import insert_streams, java_class, java_stream  # noqa: E402
from segstream.config import load_settings  # noqa: E402

JOB_NAME = "segstream-floor"
FLOOR = "io.segstream.flink.bench.FloorPipeline"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bounded", action="store_true",
                        help="stop at the end offsets of the events topic found when the job starts")
    parser.add_argument("--config", help="YAML configuration (default conf/segstream.yaml)")
    args = parser.parse_args(argv)

    settings = load_settings(args.config)
    env, t_env = job_environments(settings)
    kafka_tables.create_tables(t_env, settings, args.bounded or settings.bounded)
    events = kafka_tables.record_stream(t_env, "events_source")
    counts = java_class(FLOOR).build(java_stream(events))
    insert_streams(t_env, {"evaluations_sink": counts})
    env.execute(JOB_NAME)


if __name__ == "__main__":
    main()
