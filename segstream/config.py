"""Typed configuration: conf/segstream.yaml, overridden by SEGSTREAM_* environment variables.

Nested keys use a double underscore, e.g. SEGSTREAM_KAFKA__BOOTSTRAP_SERVERS=broker:9092 or
SEGSTREAM_FLINK__PARALLELISM=4. The file is chosen with SEGSTREAM_CONFIG (default:
conf/segstream.yaml in the project root).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from batch.config import BatchConfig  # the batch layer owns its section
from operators.event_time import EventsConfig  # the event contract's section (event time, docs/events.md)
from operators.ownership import OwnershipConfig  # signing keys of rule records and erase commands
from operators.pii import PiiConfig  # the PII policy's section (docs/security.md, item 6)
from operators.rule_limits import RuleLimits  # the rules' section (docs/security.md)
from segstream.windows import AlertsConfig, WindowsConfig  # the window job's sections, composed likewise
from serving.config import ServingConfig  # the tracking front owns its section
from sinks.bigtable.config import BigtableConfig  # the sink owns its section; Settings composes it

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "conf" / "segstream.yaml"


class Topics(BaseModel):
    events: str = "events"
    evaluations: str = "evaluations"
    dead_letters: str = "dead-letters"
    rules: str = "rules"
    expirations: str = "expirations"
    # The window job (docs/windows.md): aggregates, surge alerts, late events.
    aggregates: str = "aggregates"
    alerts: str = "alerts"
    late_events: str = "late-events"
    # Every rule record the job applied, with its rules_version, never compacted (docs/batch.md).
    rules_log: str = "rules-log"
    # Erasures done: the acknowledgement of every erase command (docs/security.md, "Erasure").
    erasures: str = "erasures"


class KafkaConfig(BaseModel):
    bootstrap_servers: str = "127.0.0.1:19092"
    topics: Topics = Topics()
    events_partitions: int = 4
    # retention.ms of the topics segstream creates. Kafka deletes a segment once its newest record
    # *timestamp* is older than this; the events topic is on LogAppendTime (append times), but
    # other topics may hold producers' or event times: a replay or backfill of older history there
    # would be deleted within minutes. -1 keeps everything (the local
    # stack's default); in production set a policy longer than the oldest event time you accept.
    topic_retention_ms: int = -1
    # Replicas of each topic segstream creates (`stack up`, `stack provision`): 1 for the one-node
    # local broker and docker compose; 3 on a production cluster (docker/k8s/configmap.yaml).
    topic_replication_factor: int = 1
    group_id: str = "segstream"
    # Where a job without a checkpoint starts: earliest-offset | group-offsets | latest-offset
    startup_mode: Literal["earliest-offset", "group-offsets", "latest-offset"] = "earliest-offset"
    # at-least-once | exactly-once (docs/operations.md, docs/recovery.md)
    delivery_guarantee: Literal["at-least-once", "exactly-once"] = "at-least-once"
    transactional_id_prefix: str = "segstream"
    transaction_timeout_ms: int = 600_000
    # How the exactly-once sink names its transactions, and so how a restored job finds the open
    # transactions of the one that crashed: INCREMENTING (the connector's default: one id per
    # checkpoint, found by probing ids with InitProducerId) or POOLING (a small pool of ids, found
    # with ListTransactions).
    transaction_naming_strategy: Literal["INCREMENTING", "POOLING"] = "INCREMENTING"
    # Extra Kafka client properties for the job's sources and sinks (security, fetch and batching
    # settings...), e.g. {"security.protocol": "SASL_SSL"}; passed as the SQL connector's properties.*
    source_properties: dict[str, str] = {}
    sink_properties: dict[str, str] = {}


class FlinkConfig(BaseModel):
    parallelism: int = 2
    # Key groups: the most parallelism keyed state can ever be rescaled to. Fixed by the first
    # savepoint; changing it later orphans all keyed state, so it is set here, not derived.
    max_parallelism: int = 128
    # execution.buffer-timeout.interval: the longest a record waits in a network buffer that is
    # not full before it is sent on. Flink's default (100 ms) alone would miss the latency target
    # at a moderate rate; lower costs some throughput (docs/benchmarks.md, "Latency").
    buffer_timeout_ms: int = 5
    state_backend: Literal["rocksdb", "hashmap"] = "rocksdb"
    checkpoint_interval_ms: int = 10_000
    checkpoint_timeout_ms: int = 120_000
    checkpoint_min_pause_ms: int = 1_000
    checkpoint_dir: str = ".segstream/checkpoints"
    watermark_out_of_orderness_ms: int = 5_000
    watermark_idleness_ms: int = 10_000
    # Restarts after a failure, each from the last checkpoint, with an exponential delay (Flink's
    # exponential-delay strategy): initial, x multiplier per failure in a row, at most max, +-jitter;
    # after reset_threshold without a failure the delay starts from initial again. None attempts:
    # never give up (a 10-minute Kafka or Bigtable outage ends in recovery, docs/recovery.md);
    # N: FAILED after N restarts in a row without reset; 0: no restart at all (the first failure fails).
    restart_attempts: int | None = None
    restart_initial_backoff_ms: int = 1_000
    restart_max_backoff_ms: int = 60_000
    restart_backoff_multiplier: float = 2.0
    restart_jitter_factor: float = 0.1
    restart_reset_threshold_ms: int = 600_000
    # The job jar (segstream's Flink operator with the Kafka connector and its kafka-clients), built
    # from jvm/ by scripts/setup.sh; the job puts it in pipeline.jars, so `flink run` ships it.
    job_jar: str = ".segstream/jvm/segstream-job.jar"
    # JVM flags of a local job's JVM (the PyFlink gateway hosting the MiniCluster), put before the
    # JVM_ARGS of the environment (a collector given there replaces this one). ParallelGC: fewer
    # CPU µs per event than G1 in 6 of 7 same-run comparisons, a tie in the 7th
    # (docs/benchmarks.md section 0, round 2).
    # A Flink cluster's TaskManagers take theirs from env.java.opts.taskmanager (docs/operations.md).
    jvm_args: str = "-XX:+UseParallelGC"


class StackConfig(BaseModel):
    state_dir: str = ".segstream"
    # Apache Kafka (KRaft, one node): the client port, and the controller's (None: a free port
    # chosen at the first start and kept with the broker's storage).
    broker_port: int = 19092
    controller_port: int | None = None
    # The broker runtime resolved from Maven Central by scripts/setup.sh (jvm/broker).
    kafka_lib_dir: str = ".segstream/jvm/kafka-broker/lib"
    # One broker on a 2-core, 24 GiB machine next to Flink: 1 GiB is kafka-server-start's default.
    broker_heap: str = "1g"
    broker_start_timeout_s: float = 60.0
    # Must be >= kafka.transaction_timeout_ms, or the exactly-once sink cannot start.
    transaction_max_timeout_ms: int = 3_600_000
    emulator_port: int = 18086


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEGSTREAM_", env_nested_delimiter="__")

    kafka: KafkaConfig = KafkaConfig()
    flink: FlinkConfig = FlinkConfig()
    bigtable: BigtableConfig = BigtableConfig()
    stack: StackConfig = StackConfig()
    windows: WindowsConfig = WindowsConfig()
    alerts: AlertsConfig = AlertsConfig()
    serving: ServingConfig = ServingConfig()
    rule_limits: RuleLimits = RuleLimits()
    ownership: OwnershipConfig = OwnershipConfig()  # docs/security.md, "Rule ownership"
    batch: BatchConfig = BatchConfig()  # the batch layer (batch/, docs/batch.md)
    pii: PiiConfig = PiiConfig()  # per-tenant drop / hash / keep of event values at ingest
    events: EventsConfig = EventsConfig()  # the event contract: max_future_skew_ms (docs/events.md)
    stats_file: str = "conf/stats.yaml"
    rules_file: str = "conf/rules.yaml"
    # Bounded runs stop at the end offsets found when the job starts (demo, tests, benchmarks).
    bounded: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment beats the YAML file (passed as init kwargs): ops override a file per deploy.
        return env_settings, init_settings

    def path(self, value: str) -> Path:
        """Resolve a configured path relative to the project root (absolute paths stay as they are)."""
        p = Path(value)
        return p if p.is_absolute() else PROJECT_ROOT / p


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    config_path = Path(path or os.environ.get("SEGSTREAM_CONFIG") or DEFAULT_CONFIG)
    data = yaml.safe_load(config_path.read_text()) if config_path.exists() else {}
    return Settings(**(data or {}))
