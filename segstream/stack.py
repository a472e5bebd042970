"""The local stack: Apache Kafka (KRaft, one node), the Bigtable emulator, topics and tables.

Everything lives under the configured state directory (pid files, logs, the broker's storage),
and `up`/`down` are idempotent. Production runs Apache Kafka and Cloud Bigtable: only addresses
in conf/ change. The broker runtime and the job jar are built by scripts/setup.sh (Maven, jvm/);
`up` builds them too when they are missing or stale (offline after the first resolution).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segstream import jvm
from segstream.config import Settings
from segstream.emulator import find_binary
from segstream.kafka_admin import ensure_topics, per_topic_configs, topic_configs, topic_plan
from segstream.kafka_broker import BrokerOptions, KafkaBroker
from segstream.processes import Service


def provision_topics(settings: Settings) -> None:
    """Create segstream's topics that do not exist yet on the configured Kafka cluster."""
    ensure_topics(settings.kafka.bootstrap_servers, topic_plan(settings), configs=topic_configs(settings),
                  replication_factor=settings.kafka.topic_replication_factor, per_topic=per_topic_configs(settings))


def provision_tables(settings: Settings) -> None:
    """Create the Bigtable tables (and column families) that do not exist yet."""
    from sinks.bigtable.schema import ensure_tables

    ensure_tables(settings.bigtable)


def provision(settings: Settings) -> None:
    """Topics and tables on clusters segstream does not start itself (docker compose, Kubernetes):
    what `stack up` does after starting the local broker and emulator. Idempotent."""
    provision_topics(settings)
    if settings.bigtable.enabled:
        provision_tables(settings)


@dataclass
class Stack:
    settings: Settings

    @property
    def state_dir(self) -> Path:
        return self.settings.path(self.settings.stack.state_dir)

    @property
    def kafka(self) -> KafkaBroker:
        s = self.settings.stack
        return KafkaBroker(BrokerOptions(
            lib_dir=self.settings.path(s.kafka_lib_dir), state_dir=self.state_dir, port=s.broker_port,
            controller_port=s.controller_port, heap=s.broker_heap,
            transaction_max_timeout_ms=s.transaction_max_timeout_ms, start_timeout_s=s.broker_start_timeout_s))

    @property
    def broker(self) -> Service:
        return self.kafka.service

    @property
    def emulator(self) -> Service:
        return Service("bigtable-emulator", self.state_dir)

    def up(self, durable: bool = False) -> None:
        if self.settings.path(self.settings.stack.kafka_lib_dir) == jvm.KAFKA_LIB_DIR.resolve():
            jvm.build()  # provisioning: a no-op when jvm/ is built and unchanged
        self.kafka.start(durable)
        provision_topics(self.settings)
        if self.settings.bigtable.enabled:
            self._start_emulator()
            provision_tables(self.settings)

    def down(self) -> list[str]:
        stopped = []
        if self.kafka.stop():
            stopped.append(self.broker.name)
        if self.emulator.stop():
            stopped.append(self.emulator.name)
        return stopped

    def status(self) -> dict[str, int | None]:
        return {s.name: s.pid() for s in (self.broker, self.emulator)}

    def _start_emulator(self) -> None:
        port = self.settings.stack.emulator_port
        self.emulator.start([str(find_binary()), "-host", "127.0.0.1", "-port", str(port)], port)
