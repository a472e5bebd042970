#!/usr/bin/env bash
# README command 2: lint and types, then every test, the slow ones too (they start their own
# Apache Kafka broker and Bigtable emulator on free ports and run the job on the embedded
# MiniCluster or a standalone cluster). "No tests ran" (pytest exit 5) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1
# The demo page's end-to-end test (tests/integration/test_demo_page.py) drives Debian's Chromium
# through its chromedriver, headless; installed here, once, when missing.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "installing chromium and chromium-driver (Debian packages) for the demo page's browser test" >&2
  { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } \
    || { echo "could not install chromium chromium-driver with apt-get" >&2; exit 1; }
fi
.venv/bin/ruff check . || { echo "ruff found problems (fix them, or .venv/bin/ruff check --fix .)" >&2; exit 1; }
.venv/bin/mypy || { echo "mypy found type errors" >&2; exit 1; }
# JUnit (jvm/), against the local repository setup.sh filled (the first run also fetches the
# Surefire JUnit provider, which a build without tests never resolves).
mvn -B -f jvm/pom.xml -Dmaven.repo.local="$PWD/.segstream/m2" -Dsegstream.out="$PWD/.segstream/jvm" test \
  | grep -E "Tests run:|FAIL|ERROR|BUILD" | grep -v "Tests run:.*in io\." \
  || { echo "the JVM tests failed (mvn -f jvm/pom.xml test)" >&2; exit 1; }
.venv/bin/python -m pytest -p no:cacheprovider --timeout 1200 "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
