"""Run by the Python interpreter that PyFlink's thread mode embeds in the TaskManager JVM, at start.

In thread mode every Python operator of a TaskManager opens on its own thread in one shared
interpreter. When two of them import the DataSketches extension (nanobind) at the same moment,
the JVM dies with "terminate called after throwing an instance of 'nanobind::builtin_exception'"
and nothing in Flink's log. Importing the native extensions here, before any operator thread
exists, removes the race. jobs/flink_env.py puts this folder first on PYTHONPATH.
"""

import cel  # noqa: F401
import datasketches  # noqa: F401
import msgspec  # noqa: F401
