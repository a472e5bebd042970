#!/usr/bin/env bash
# README command 1: set up, start the local stack, produce sample traffic, run the jobs, show results,
# then send a few requests through the tracking front and print their receipts.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/segstream demo "$@"
