"""Between PyFlink and segstream's Java operators (jvm/job, package io.segstream.flink), over py4j.

PyFlink has public ways to wrap a Java object (`pyflink.datastream.DataStream(j_stream)`) and to
reach the JVM (`pyflink.java_gateway.get_gateway()`), but none to unwrap a Python DataStream into
its Java one. Each access to a private PyFlink attribute is isolated in one function here, and
says which attribute and why: a PyFlink upgrade must re-check each of them.
"""

from __future__ import annotations

from py4j.java_gateway import JavaClass, JavaObject
from pyflink.datastream import DataStream
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment


def java_class(name: str) -> JavaClass:
    """The Java class `name` (fully qualified), from the client's class path: the job jar must be
    in `pipeline.jars`. Public API only."""
    view = get_gateway().jvm
    for part in name.split("."):
        view = getattr(view, part)
    return view


def java_stream(stream: DataStream) -> JavaObject:
    """The Java DataStream behind a PyFlink DataStream, to hand to a Java method.

    PRIVATE PyFlink attribute: `DataStream._j_data_stream` (PyFlink 2.3; the wrapped
    org.apache.flink.streaming.api.datastream.DataStream). PyFlink offers no public getter, and
    the only other ways to a Java stream from a table are themselves private (`Table._j_table`,
    `StreamTableEnvironment._j_tenv`). A PyFlink upgrade must re-check that the attribute still
    exists and still holds the Java stream.
    """
    return stream._j_data_stream


def python_stream(j_stream: JavaObject) -> DataStream:
    """A Java DataStream as a PyFlink DataStream (public constructor), e.g. for
    `StreamTableEnvironment.from_data_stream`."""
    return DataStream(j_stream)


def insert_streams(t_env: StreamTableEnvironment, streams: dict[str, JavaObject]) -> None:
    """Write each Java DataStream into its sink table (name -> stream), in one statement set that
    is part of the job (public API only)."""
    statements = t_env.create_statement_set()
    for table, j_stream in streams.items():
        statements.add_insert(table, t_env.from_data_stream(python_stream(j_stream)))
    statements.attach_as_datastream()
