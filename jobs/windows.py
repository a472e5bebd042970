"""segstream's window job: event-time window aggregates, surge alerts and late events.

    Kafka `events` ──► windows-extract ──► key_by(window, tenant, value) ──► windows-aggregate ──► `aggregates`
                        (event contract;                               (keyed state (heap),    ├──► `alerts`
                         invalid: skipped)                              event-time timers)     └──► `late-events`

By default the main job computes the windows (`windows.enabled`, a branch off its parse-validate:
one read and one parse of each event; docs/windows.md, "Where the windows run"). This standalone
job is for deployments that want the windows isolated from the per-user job (own slots, own
checkpoints and savepoints, own upgrades) at the price of a second read and parse of every event:
it reads the same `events` topic with its own consumer group, and runs only with
`windows.enabled: false`. The definitions are conf/windows.yaml (segstream/windows.py), the Java
operators the same as the main job's.
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

from py4j.java_gateway import JavaObject  # noqa: E402
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
    # With the append time: the window job skips the events the main job dead-letters as too far in
    # the future, and assigns watermarks after that (io.segstream.flink.EventTime), as the main job.
    events = kafka_tables.event_stream(t_env, "window_events_source")
    kafka_tables.require_log_append_time(settings)
    # The definitions are checked here, on the client (pydantic, then WindowSpec.parseAll).
    pipeline = java_class(PIPELINE).build(java_stream(events), definitions_json(definitions(settings)),
                                          kafka_tables.event_time_json(settings))
    insert_streams(t_env, window_sinks(pipeline))


def window_sinks(pipeline: JavaObject) -> dict[str, JavaObject]:
    """The sink table of each stream of a Java WindowPipeline (this job's, or the main job's branch)."""
    return {"aggregates_sink": pipeline.aggregates(), "alerts_sink": pipeline.alerts(),
            "late_events_sink": pipeline.lateEvents()}


def main(argv: list[str] | None = None) -> None:
    args = job_arguments(__doc__.splitlines()[0], argv)

    settings = load_settings(args.config)
    if settings.windows.enabled:
        raise SystemExit("windows.enabled is true: the main job computes the windows already, and this job "
                         "would write the same topics with the same transactional ids. Set windows.enabled: "
                         "false (SEGSTREAM_WINDOWS__ENABLED=false) to run them here instead (docs/windows.md).")
    if settings.windows.parallelism is not None:
        settings.flink.parallelism = settings.windows.parallelism
    settings.flink.state_backend = settings.windows.state_backend
    bounded = args.bounded or settings.bounded
    env, t_env = job_environments(settings, args.savepoint)
    build(env, t_env, settings, bounded)
    env.execute(JOB_NAME)


if __name__ == "__main__":
    main()
