"""A single-node Apache Kafka broker for the local stack: KRaft, combined broker and controller.

The runtime is the official `org.apache.kafka:kafka_2.13` with its dependencies, resolved from
Maven Central by the project's Maven build (jvm/broker) into `stack.kafka_lib_dir`; this module
only writes the configuration, formats the storage and starts `kafka.Kafka` the way
`kafka-server-start.sh` does, as a background service with a pid file and a log.

Storage lives under `{state_dir}/kafka`. Without `durable` it is wiped and formatted on every
start (a fresh, empty broker); with `durable` an already formatted directory is kept, so topics
and offsets survive `stack down` / `stack up` (Kafka's own log, fsync as configured).
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from segstream.errors import StackError
from segstream.jvm import java_binary
from segstream.processes import Service, is_running, port_is_free

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
"""


@dataclass
class BrokerOptions:
    lib_dir: Path
    state_dir: Path
    port: int
    controller_port: int | None
    heap: str
    transaction_max_timeout_ms: int
    start_timeout_s: float


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (= kafka-storage
    random-uuid). Like Kafka's Uuid.randomUuid, never one starting with '-': the storage tool's
    argument parser takes `-t -xyz...` for an option (1 format in 64 failed so)."""
    while (cluster_id := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"):
        pass
    return cluster_id


def server_properties(data_dir: Path, port: int, controller_port: int, transaction_max_timeout_ms: int) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        # One node: every internal topic has one replica, and one in-sync replica is enough, or
        # consumer groups and transactions never become available.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "8",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # The exactly-once sink asks for transaction.timeout.ms (kafka.transaction_timeout_ms); the
        # broker refuses any above this.
        "transaction.max.timeout.ms": str(transaction_max_timeout_ms),
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "log.retention.hours": "168",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


class KafkaBroker:
    def __init__(self, options: BrokerOptions):
        self.o = options
        self.service = Service("broker", options.state_dir)
        self.home = options.state_dir / "kafka"
        self.data_dir = self.home / "data"
        self.config_file = self.home / "server.properties"

    def _classpath(self) -> str:
        lib = self.o.lib_dir
        if not lib.is_dir() or not any(lib.glob("kafka_2.13-*.jar")):
            raise StackError(f"the Kafka broker runtime is not in {lib}: run scripts/setup.sh "
                             "(it resolves org.apache.kafka:kafka_2.13 from Maven Central)")
        return f"{lib}/*"

    def _controller_port(self) -> int:
        """The configured controller port, else one chosen once and kept with the storage."""
        if self.o.controller_port:
            return self.o.controller_port
        remembered = self.home / "controller.port"
        if remembered.exists() and (self.data_dir / "meta.properties").exists():
            return int(remembered.read_text())

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.home.mkdir(parents=True, exist_ok=True)
        remembered.write_text(str(port))
        return port

    def _java(self, main: str, *args: str, heap: str = "256m", jvm: tuple[str, ...] = ()) -> list[str]:
        return [java_binary(), f"-Xmx{heap}", f"-Xms{heap}", *jvm,
                f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
                "-cp", self._classpath(), main, *args]

    def start(self, durable: bool) -> int:
        if (pid := self.service.pid()) is not None:
            return pid
        self._classpath()  # fail early and clearly if the runtime is not built
        if not durable and self.home.exists():
            shutil.rmtree(self.home)
        formatted = (self.data_dir / "meta.properties").exists()
        controller_port = self._controller_port()
        for port, what in ((self.o.port, "broker"), (controller_port, "controller")):
            if not port_is_free(port):
                raise StackError(f"Kafka {what} port 127.0.0.1:{port} is taken by another process "
                                 f"(set stack.{what}_port)")
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "log4j2.properties").write_text(LOG4J2.format(log=self.home / "server.log"))
        self.config_file.write_text(server_properties(self.data_dir, self.o.port, controller_port,
                                                      self.o.transaction_max_timeout_ms))
        if not formatted:
            result = subprocess.run(self._java("kafka.tools.StorageTool", "format", "--standalone",
                                               "-t", _cluster_id(), "-c", str(self.config_file)),
                                    capture_output=True, text=True)
            if result.returncode != 0:
                tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
                raise StackError("formatting the Kafka storage failed: " + " | ".join(tail))
        # The JVM flags of kafka-server-start.sh, with the heap from the config.
        pid = self.service.spawn(self._java("kafka.Kafka", str(self.config_file), heap=self.o.heap,
                                            jvm=("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                                                 "-XX:InitiatingHeapOccupancyPercent=35",
                                                 "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true")))
        try:
            self._wait_ready(pid)
        except StackError as exc:
            self.service.stop()
            raise StackError(f"{exc}\n--- last lines of {self.service.log_file} ---\n{self.log_tail()}") from None
        return pid

    def _wait_ready(self, pid: int) -> None:
        """Ready = the broker answers a metadata request with itself as a live broker."""
        deadline = time.monotonic() + self.o.start_timeout_s
        # log_level 0: the refused connections while the JVM starts are expected, not worth printing
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{self.o.port}", "socket.timeout.ms": 1000,
                             "log_level": 0})
        while time.monotonic() < deadline:
            if not is_running(pid):
                raise StackError("the Kafka broker exited during start-up")
            try:
                if admin.list_topics(timeout=1).brokers:
                    return
            except KafkaException:
                pass
            time.sleep(0.2)
        raise StackError(f"the Kafka broker did not answer on 127.0.0.1:{self.o.port} within "
                         f"{self.o.start_timeout_s:.0f} s")

    def log_tail(self, lines: int = 20) -> str:
        text = ""
        for log in (self.service.log_file, self.home / "server.log"):
            if log.exists():
                text += "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    def stop(self) -> bool:
        return self.service.stop(timeout=20.0)
