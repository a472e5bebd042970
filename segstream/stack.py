"""The local stack: Kafka-protocol broker (tansu), Bigtable emulator, connector jars, topics, tables.

Everything lives under the configured state directory (pid files, logs, caches, broker data),
and `up`/`down` are idempotent. Production uses Apache Kafka and Cloud Bigtable instead: only
addresses in conf/ change.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from segstream import artifacts
from segstream.config import Settings
from segstream.emulator import find_binary
from segstream.errors import StackError
from segstream.kafka_admin import ensure_topics, topic_plan
from segstream.processes import Service

S3RVER_VERSION = "3.7.1"
S3_BUCKET = "tansu"


@dataclass
class Stack:
    settings: Settings

    @property
    def state_dir(self) -> Path:
        return self.settings.path(self.settings.stack.state_dir)

    @property
    def broker(self) -> Service:
        return Service("broker", self.state_dir)

    @property
    def emulator(self) -> Service:
        return Service("bigtable-emulator", self.state_dir)

    @property
    def s3(self) -> Service:
        return Service("s3", self.state_dir)

    def jars(self) -> list[Path]:
        return artifacts.ensure(artifacts.KAFKA_JARS, self.settings.path(self.settings.flink.jar_dir))

    def up(self, durable: bool = False) -> None:
        self.jars()
        self._start_broker(durable)
        ensure_topics(self.settings.kafka.bootstrap_servers, topic_plan(self.settings))
        if self.settings.bigtable.enabled:
            self._start_emulator()
            from sinks.bigtable.schema import ensure_tables

            ensure_tables(self.settings.bigtable)

    def down(self) -> list[str]:
        return [s.name for s in (self.broker, self.s3, self.emulator) if s.stop()]

    def status(self) -> dict[str, int | None]:
        return {s.name: s.pid() for s in (self.broker, self.s3, self.emulator)}

    def _start_broker(self, durable: bool) -> None:
        port = self.settings.stack.broker_port
        url = f"tcp://127.0.0.1:{port}"
        env: dict[str, str] = {}
        storage = "memory://tansu/"
        if durable:
            storage = f"s3://{S3_BUCKET}/"
            env = self._start_s3()
        tansu = artifacts.ensure((artifacts.TANSU,), self.state_dir / "bin")[0]
        self.broker.start([str(tansu), "broker", "--listener-url", url, "--advertised-listener-url", url,
                           "--storage-engine", storage], port, env=env)

    def _start_s3(self) -> dict[str, str]:
        """A local file-backed S3 server so the broker's log survives broker restarts."""
        port = self.settings.stack.s3_port
        prefix = self.state_dir / "s3rver"
        binary = prefix / "node_modules" / ".bin" / "s3rver"
        if not binary.exists():
            if shutil.which("npm") is None:
                raise StackError("--durable needs npm (to install s3rver); it is not on PATH")
            subprocess.run(["npm", "install", "--silent", "--prefix", str(prefix), f"s3rver@{S3RVER_VERSION}"],
                           check=True, capture_output=True)
        data = self.state_dir / "s3-data"
        data.mkdir(parents=True, exist_ok=True)
        self.s3.start([str(binary), "--directory", str(data), "--port", str(port), "--address", "127.0.0.1",
                       "--configure-bucket", S3_BUCKET, "--silent"], port)
        return {"AWS_ENDPOINT": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true",
                "AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER", "AWS_DEFAULT_REGION": "auto"}

    def _start_emulator(self) -> None:
        port = self.settings.stack.emulator_port
        self.emulator.start([str(find_binary()), "-host", "127.0.0.1", "-port", str(port)], port)

