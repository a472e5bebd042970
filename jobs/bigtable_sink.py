"""Mirror every evaluated event to Bigtable from inside the Flink job (docs/bigtable.md, "Delivery").

An AsyncFunction whose element completes only once its event row and profile row are written.
PyFlink's async operator drains its in-flight requests before a checkpoint barrier passes, so
every element before a completed checkpoint is in Bigtable and everything after it is replayed on
restore: at-least-once writes onto deterministic row keys and cell timestamps, i.e. exactly the
set of events in the table.
"""

from __future__ import annotations

import asyncio

from pyflink.common import Time, Types
from pyflink.datastream import AsyncDataStream, AsyncFunction, DataStream
from pyflink.util.java_utils import get_j_env_configuration

from sinks.bigtable import mutations
from sinks.bigtable.config import BigtableConfig
from sinks.bigtable.writer import BigtableWriter, WriterOptions

UID = "bigtable-sink"
NAME = "Bigtable sink"
# In-flight elements per subtask: the async queue is the flow control (2 rows per element stays
# well under the writer's max_pending_rows, so backpressure reaches Flink through a full queue).
CAPACITY = 1000
WRITER_OPTIONS = WriterOptions()
# No Flink-side timeout: PyFlink times each element with its own threading.Timer (an OS thread per
# in-flight element), which cut sink throughput 2.4x in bench/bigtable_write.py. The writer bounds
# every element anyway (attempt deadline per RPC, BigtableWriteError after give_up_after_s), and a
# checkpoint that cannot complete times out and fails the job as a last resort.
NO_TIMEOUT = Time.milliseconds(0)


class BigtableSinkFunction(AsyncFunction):
    """(event_json, evaluation_json) -> [event_id], emitted once both rows are durable."""

    def __init__(self, config: BigtableConfig):
        self._config = config
        self._writer: BigtableWriter | None = None

    async def async_invoke(self, value) -> list[str]:
        event_json, evaluation_json = value[0].encode(), value[1].encode()
        if self._writer is None:  # the async client must be built on the operator's event loop
            self._writer = BigtableWriter(self._config, WRITER_OPTIONS)
        width = self._config.hash_prefix_hex
        event = mutations.decode_event(event_json)
        await asyncio.gather(
            self._writer.write(self._config.events_table, [mutations.event_entry(event, event_json, width)]),
            self._writer.write(self._config.profiles_table, [mutations.profile_entry(evaluation_json, width)]),
        )
        return [event.event_id]


def attach_bigtable_sink(stream: DataStream, config: BigtableConfig) -> DataStream:
    """Write each (event_json, evaluation_json) to Bigtable; returns the stream of written event_ids.

    PyFlink refuses AsyncFunction in 'thread' mode ("AsyncFunction is still not supported for
    'thread' mode."). The operator class (embedded vs. external Python) is chosen from the
    environment's configuration when the operator is built, so in thread mode this one operator is
    built in process mode and the rest of the job keeps running in thread mode.
    """
    j_conf = get_j_env_configuration(stream._j_data_stream.getExecutionEnvironment())
    mode = j_conf.getString("python.execution-mode", "process")
    j_conf.setString("python.execution-mode", "process")
    try:
        written = AsyncDataStream.unordered_wait(
            stream,
            BigtableSinkFunction(config),
            NO_TIMEOUT,
            capacity=CAPACITY,
            output_type=Types.STRING(),
        )
    finally:
        j_conf.setString("python.execution-mode", mode)
    return written.uid(UID).name(NAME)
