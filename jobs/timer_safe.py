"""Execute the job with io.segstream.flink.TimerSafeKeyedCoProcessOperator (jvm/job) in place of
PyFlink's keyed co-process operator, so that expiry timers registered just before a checkpoint
barrier are in that checkpoint (the Java class says why).

PyFlink builds the keyed broadcast operator inside the JVM when it translates the job, so the swap
happens on the finished stream graph, which is then executed as `env.execute` would. Thread mode
uses another operator and is left as it is. Needs the job jar (jvm/job) in
`pipeline.jars` (the client loads the class from it).
"""

from __future__ import annotations

from py4j.java_gateway import JavaObject
from pyflink.common import JobExecutionResult
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway

OPERATOR = "io.segstream.flink.TimerSafeKeyedCoProcessOperator"


def stream_graph(env: StreamExecutionEnvironment, job_name: str) -> tuple[JavaObject, int]:
    """The job's stream graph with the operator swapped in, and how many operators were swapped."""
    # What StreamExecutionEnvironment.execute does first (PyFlink 2.3).
    graph = env._generate_stream_graph(clear_transformations=True, job_name=job_name)
    operator = get_gateway().jvm
    for part in OPERATOR.split("."):
        operator = getattr(operator, part)
    return graph, operator.replaceIn(graph)


def execute(env: StreamExecutionEnvironment, job_name: str) -> JobExecutionResult:
    """env.execute(job_name), on the graph of `stream_graph`."""
    graph, _ = stream_graph(env, job_name)
    return JobExecutionResult(env._j_stream_execution_environment.execute(graph))
