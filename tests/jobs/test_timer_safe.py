"""The job's stream graph runs the evaluator on TimerSafeKeyedCoProcessOperator (jvm/job): the
guard for the PyFlink internals jobs/timer_safe.py relies on (what it fixes: test_expiry.py)."""

from __future__ import annotations

import os

import pytest

from jobs import timer_safe
from jobs.flink_env import create_environments
from jobs.user_stats import build
from segstream.config import Settings
from segstream.jvm import require


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_evaluator_runs_on_the_timer_safe_operator(monkeypatch):
    # create_environments exports PYTHONPATH for the Python workers: not for later tests' processes.
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    settings = Settings()  # building the graph connects to nothing
    jars = [require(settings.path(settings.flink.job_jar), "the job jar")]
    env, t_env = create_environments(settings, jars)
    build(env, t_env, settings, bounded=False)

    graph, swapped = timer_safe.stream_graph(env, "test")

    operators = {node.getTransformationUID(): node.getOperator().getClass().getName()
                 for node in graph.getStreamNodes().toArray() if node.getTransformationUID()}
    assert swapped == 1
    assert operators["evaluate-user"] == timer_safe.OPERATOR
