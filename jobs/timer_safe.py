"""Execute the job with io.segstream.flink.TimerSafeKeyedCoProcessOperator (jobs/java) in place of
PyFlink's keyed co-process operator, so that expiry timers registered just before a checkpoint
barrier are in that checkpoint (the Java class says why).

PyFlink builds the keyed broadcast operator inside the JVM when it translates the job, so the swap
happens on the finished stream graph, which is then executed as `env.execute` would. Thread mode
uses another operator and is left as it is.
"""

from __future__ import annotations

from pyflink.common import JobExecutionResult
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway

OPERATOR = "io.segstream.flink.TimerSafeKeyedCoProcessOperator"


def execute(env: StreamExecutionEnvironment, job_name: str) -> tuple[JobExecutionResult, int]:
    """env.execute(job_name) with the operator swapped; returns the result and how many were swapped.

    Needs the jar of segstream.jvm_extension in `pipeline.jars` (the client loads the class from it).
    """
    # What StreamExecutionEnvironment.execute does, with the swap in between (PyFlink 2.3).
    graph = env._generate_stream_graph(clear_transformations=True, job_name=job_name)
    operator = get_gateway().jvm
    for part in OPERATOR.split("."):
        operator = getattr(operator, part)
    replaced = operator.replaceIn(graph)
    return JobExecutionResult(env._j_stream_execution_environment.execute(graph)), replaced
