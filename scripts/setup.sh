#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: the Bigtable emulator (Debian package), a Python venv with
# segstream and its pinned dependencies, and the JVM side (jvm/: the job jar and the Apache Kafka
# broker runtime), resolved from Maven Central into .segstream/m2 — offline after the first run.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "setup: $*" >&2; exit 1; }
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null \
  || fail "segstream needs Python 3.11 (PyFlink 2.3 supports 3.9-3.12; the pins are for 3.11); set PYTHON=/path/to/python3.11"
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
command -v "$JAVA" >/dev/null || fail "segstream needs a Java 17 JDK (java not found; e.g. apt-get install openjdk-17-jdk-headless)"
command -v "${JAVA_HOME:+$JAVA_HOME/bin/}javac" >/dev/null \
  || fail "segstream needs a Java 17 JDK, not only a JRE (javac not found; e.g. apt-get install openjdk-17-jdk-headless)"
command -v mvn >/dev/null || fail "segstream builds its JVM side with Maven (mvn not found; e.g. apt-get install maven)"
if ! command -v cbtemulator >/dev/null && [ ! -x /usr/lib/google-cloud-sdk/platform/bigtable-emulator/cbtemulator ]; then
  echo "installing the Bigtable emulator (google-cloud-cli-bigtable-emulator)" >&2
  { apt-get update -qq && apt-get install -y -qq google-cloud-cli-bigtable-emulator >/dev/null; } \
    || fail "could not install google-cloud-cli-bigtable-emulator with apt-get"
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.segstream-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing segstream and its dependencies into .venv (first time: about 2 minutes)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test,bench]"
  echo "$want" > "$stamp"
fi

# jvm/ with Maven: a no-op when nothing changed; online only when a pom changed.
.venv/bin/python -m segstream.jvm
