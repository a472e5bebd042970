"""segstream's window job: event-time window aggregates, surge alerts and late events.

    Kafka `events` ──► windows-extract ──► key_by(window, tenant, value) ──► windows-aggregate ──► `aggregates`
                        (event contract;                               (keyed state (heap),    ├──► `alerts`
                         invalid: skipped)                              event-time timers)     └──► `late-events`

A second job next to jobs/user_stats.py, reading the same `events` topic with its own consumer
group and its own checkpoints; the definitions are conf/windows.yaml (segstream/windows.py).
No Python runs per record: the operators are Java (jvm/job, io.segstream.flink.windows). This
script declares the Kafka tables (jobs/kafka_tables.py), hands the events stream to
WindowPipeline over py4j and the three Java streams back to the sink tables.

Run on the embedded MiniCluster with `python jobs/windows.py [--bounded] [--savepoint P]`, or
submit unchanged with `flink run -py jobs/windows.py` (docs/windows.md, "Operations").
"""

from __future__ import annotations

import sys
from pathlib import Path

# `flink run -py` executes this file as a script: make the project packages importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyflink.datastream import StreamExecutionEnvironment  # noqa: E402
from pyflink.table import StreamTableEnvironment  # noqa: E402

from jobs import kafka_tables  # noqa: E402
from jobs.flink_env import job_arguments, job_environments  # noqa: E402
from jobs.jvm_bridge import insert_streams, java_class, java_stream  # noqa: E402
from segstream.config import Settings, load_settings  # noqa: E402
from segstream.windows import definitions, definitions_json  # noqa: E402

JOB_NAME = "segstream-windows"
PIPELINE = "io.segstream.flink.windows.WindowPipeline"



def build(env: StreamExecutionEnvironment, t_env: StreamTableEnvironment, settings: Settings,
          bounded: bool) -> None:
    kafka_tables.create_window_tables(t_env, settings, bounded)
    events = kafka_tables.record_stream(t_env, "window_events_source")
    # The definitions are checked here, on the client (pydantic, then WindowSpec.parseAll).
    pipeline = java_class(PIPELINE).build(java_stream(events), definitions_json(definitions(settings)))

    insert_streams(t_env, {"aggregates_sink": pipeline.aggregates(), "alerts_sink": pipeline.alerts(),
                           "late_events_sink": pipeline.lateEvents()})


def main(argv: list[str] | None = None) -> None:
    args = job_arguments(__doc__.splitlines()[0], argv)

    settings = load_settings(args.config)
    if settings.windows.parallelism is not None:
        settings.flink.parallelism = settings.windows.parallelism
    settings.flink.state_backend = settings.windows.state_backend
    bounded = args.bounded or settings.bounded
    env, t_env = job_environments(settings, args.savepoint)
    build(env, t_env, settings, bounded)
    env.execute(JOB_NAME)


if __name__ == "__main__":
    main()
