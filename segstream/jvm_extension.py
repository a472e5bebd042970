"""segstream's own JVM classes (jobs/java), compiled against the installed PyFlink into a cached jar.

There is one today: io.segstream.flink.TimerSafeKeyedCoProcessOperator, which puts the timers the
Python evaluator registered just before a checkpoint barrier into that checkpoint (see its
Javadoc; docs/recovery.md). The jar goes into the job's `pipeline.jars` with the Kafka connector,
so `flink run` ships it to any cluster. It is rebuilt only when the sources or PyFlink change
(the file name carries a digest of both). Needs a JDK (`javac`), as any Flink development does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pyflink

from segstream.config import PROJECT_ROOT
from segstream.errors import StackError

SOURCE_DIR = PROJECT_ROOT / "jobs" / "java"
FLINK_HOME = Path(pyflink.__file__).resolve().parent
# The Java release the classes are compiled for: Flink 2.x runs on Java 11 and newer.
JAVA_RELEASE = "11"


def _sources() -> list[Path]:
    return sorted(SOURCE_DIR.rglob("*.java"))


def _digest(sources: list[Path]) -> str:
    digest = hashlib.sha256(f"{pyflink.version.__version__}:{JAVA_RELEASE}".encode())
    for source in sources:
        digest.update(str(source.relative_to(SOURCE_DIR)).encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def _javac() -> str:
    for candidate in (Path(os.environ["JAVA_HOME"]) / "bin" / "javac" if os.environ.get("JAVA_HOME") else None,
                      shutil.which("javac")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise StackError("javac not found: segstream builds jobs/java with a JDK (Java 17); install one or set JAVA_HOME")


def ensure_extension_jar(cache_dir: Path) -> Path:
    """The jar of jobs/java for the installed PyFlink, built into `cache_dir` if it is not there."""
    sources = _sources()
    jar = cache_dir / f"segstream-flink-{_digest(sources)}.jar"
    if jar.exists():
        return jar
    cache_dir.mkdir(parents=True, exist_ok=True)
    classpath = os.pathsep.join([str(FLINK_HOME / "lib" / "*"), *map(str, (FLINK_HOME / "opt").glob("flink-python*.jar"))])
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        classes = Path(tmp) / "classes"
        result = subprocess.run([_javac(), "--release", JAVA_RELEASE, "-nowarn", "-d", str(classes),
                                 "-cp", classpath, *map(str, sources)], capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"javac failed on jobs/java:\n{result.stdout}{result.stderr}")
        staged = Path(tmp) / jar.name
        with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: segstream\n\n")
            for path in sorted(classes.rglob("*.class")):
                zf.write(path, path.relative_to(classes).as_posix())
        os.replace(staged, jar)  # atomic: concurrent job starts may build it at the same time
    return jar
