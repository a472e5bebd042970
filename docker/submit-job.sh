#!/usr/bin/env bash
# Submit the job to the compose cluster's JobManager (the `submit` service of docker/compose.yaml):
# `flink run -py jobs/user_stats.py`, detached, from SAVEPOINT when it is set. Idempotent: a
# `docker compose up` while the job runs submits nothing, so the job never runs twice.
set -euo pipefail
JOB_NAME=segstream-user-stats            # jobs/user_stats.py JOB_NAME
JOBMANAGER=${JOBMANAGER:-jobmanager:8081}

if flink list -m "$JOBMANAGER" -r 2>/dev/null | grep -q ": ${JOB_NAME} (RUNNING)"; then
  echo "${JOB_NAME} is already running on ${JOBMANAGER}; nothing submitted"
  exit 0
fi
args=(run -m "$JOBMANAGER" -d -pyclientexec /opt/python/bin/python3 -pyexec /opt/python/bin/python3)
if [ -n "${SAVEPOINT:-}" ]; then
  args+=(-s "$SAVEPOINT")
fi
echo "+ flink ${args[*]} -py /opt/segstream/jobs/user_stats.py $*"
exec flink "${args[@]}" -py /opt/segstream/jobs/user_stats.py "$@"
