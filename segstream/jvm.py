"""The JVM side's build: the Maven project in jvm/ (job jar, Kafka broker runtime).

`scripts/setup.sh` runs `python -m segstream.jvm` (= `build()`): Maven resolves every pinned
artifact from Maven Central into a local repository under the state directory (`.segstream/m2`)
and writes the outputs to `.segstream/jvm`. After the first run the build is offline (`mvn -o`)
and is skipped entirely while the poms and Java sources are unchanged; a changed pom is resolved
online again. The job and `stack up` only read the resulting paths (`flink.job_jar`,
`stack.kafka_lib_dir`); they never run Maven.

Missing tools or a failed resolution end in one line saying what is missing, never a stack trace.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from segstream.errors import StackError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JVM_DIR = PROJECT_ROOT / "jvm"
STATE_DIR = PROJECT_ROOT / ".segstream"
LOCAL_REPO = STATE_DIR / "m2"
OUT_DIR = STATE_DIR / "jvm"
JOB_JAR = OUT_DIR / "segstream-job.jar"
# The JVM engine alone, runnable (io.segstream.engine.Replay): the differential test runs it.
ENGINE_JAR = OUT_DIR / "segstream-engine.jar"
KAFKA_LIB_DIR = OUT_DIR / "kafka-broker" / "lib"
STAMP = OUT_DIR / ".built"
POMS_STAMP = OUT_DIR / ".resolved"


def java_binary() -> str:
    """`java` of JAVA_HOME, else of the PATH; a one-line error if there is none."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise StackError("Java not found: segstream needs a Java 17 JDK "
                         "(e.g. `apt-get install openjdk-17-jdk-headless`) on the PATH or in JAVA_HOME")
    return found


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    version = out.split('"')[1] if '"' in out else ""
    head = version.split(".")[0]
    if head == "1":  # 1.8.0_x
        head = version.split(".")[1]
    return int(head) if head.isdigit() else 0


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(JVM_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _inputs() -> tuple[list[Path], list[Path]]:
    poms = sorted(JVM_DIR.rglob("pom.xml"))
    sources = sorted(p for p in JVM_DIR.rglob("*") if p.is_file() and "target" not in p.parts and p.name != "pom.xml")
    return poms, sources


def outputs_present() -> bool:
    return JOB_JAR.exists() and any(KAFKA_LIB_DIR.glob("kafka_2.13-*.jar"))


def up_to_date() -> bool:
    poms, sources = _inputs()
    return outputs_present() and STAMP.exists() and STAMP.read_text() == _digest(poms + sources)


def build(force: bool = False, quiet: bool = True) -> None:
    """Build jvm/ unless its outputs are current. Online only when a pom changed since the last resolution."""
    poms, sources = _inputs()
    want = _digest(poms + sources)
    if not force and outputs_present() and STAMP.exists() and STAMP.read_text() == want:
        return
    java = java_binary()
    if (major := java_major(java)) < 17:
        raise StackError(f"{java} is Java {major}: segstream needs Java 17 or newer (a JDK)")
    if not (Path(java).parent / "javac").exists() and shutil.which("javac") is None:
        raise StackError("javac not found: segstream needs a Java 17 JDK, not only a JRE "
                         "(e.g. `apt-get install openjdk-17-jdk-headless`)")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven not found: install it (e.g. `apt-get install maven`) and put `mvn` on the PATH")
    offline = POMS_STAMP.exists() and POMS_STAMP.read_text() == _digest(poms) and outputs_present()
    argv = [mvn, "-B", "-f", str(JVM_DIR / "pom.xml"), f"-Dmaven.repo.local={LOCAL_REPO}",
            f"-Dsegstream.out={OUT_DIR}", "-DskipTests" if quiet else "-Dsurefire.printSummary=true",
            *(["-o"] if offline else []), *(["-q"] if quiet else []), "package"]
    print(f"building jvm/ with Maven ({'offline' if offline else 'resolving from Maven Central'})",
          file=sys.stderr)
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stdout.splitlines() if line.startswith("[ERROR]")]
        tail = (result.stdout + result.stderr).strip().splitlines()
        first = errors[0] if errors else (tail[-1] if tail else f"exit {result.returncode}")
        raise StackError(f"the Maven build of jvm/ failed: {first} "
                         f"(rerun `{' '.join(argv[:1] + argv[1:-1])} package` to see everything)")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    POMS_STAMP.write_text(_digest(poms))
    STAMP.write_text(want)


def require(path: Path, what: str) -> Path:
    """`path` if it exists, else the one-line error that says how to build it."""
    if not path.exists():
        raise StackError(f"{what} not found at {path}: run scripts/setup.sh (it builds jvm/ with Maven)")
    return path


def main() -> int:
    try:
        build(force="--force" in sys.argv)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
