#!/usr/bin/env bash
# README command 1: set up, start the local stack, produce sample traffic, run the job, show results.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/segstream demo "$@"
