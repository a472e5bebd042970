"""The JVM Bigtable sink's writer (io.segstream.flink.BigtableSink, run from the shaded job jar by
BigtableSinkTool) on the real emulator: for the same mirror records it leaves the same tables, cell
for cell (keys, values, timestamps), as the Python writer; a permanent error fails it."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from segstream import emulator
from segstream.config import Settings
from segstream.jvm import require
from segstream.testing import free_port
from sinks.bigtable import point_at_instance, schema
from sinks.bigtable.config import BigtableConfig
from tests.sinks.test_bigtable_emulator import make_records, write_records

TOOL = "io.segstream.flink.BigtableSinkTool"


@pytest.fixture(scope="module")
def emulator_host(tmp_path_factory):
    port = free_port()
    pid = emulator.start_emulator(port, tmp_path_factory.mktemp("emulator") / "cbtemulator.log")
    try:
        emulator.wait_ready(f"127.0.0.1:{port}", timeout=20)
        yield f"127.0.0.1:{port}"
    finally:
        emulator.stop_emulator(pid)


def config(emulator_host: str, prefix: str) -> BigtableConfig:
    return BigtableConfig(emulator_host=emulator_host, events_table=f"{prefix}-events",
                          profiles_table=f"{prefix}-profiles")


def tool_command(b: BigtableConfig) -> list[str]:
    """BigtableSinkTool from the job jar, with the PyFlink wheel's Flink jars (Flink is provided)."""
    import pyflink

    settings = Settings()
    jar = require(settings.path(settings.flink.job_jar), "the job jar")
    flink_lib = Path(pyflink.__file__).parent / "lib"
    return ["java", "-cp", f"{jar}:{flink_lib}/*", TOOL, b.emulator_host, b.project, b.instance,
            b.events_table, b.profiles_table, str(b.hash_prefix_hex)]


def run_tool(b: BigtableConfig, records: list[tuple[str, str]], timeout: float = 300) -> subprocess.CompletedProcess:
    lines = "".join(json.dumps(list(r)) + "\n" for r in records)
    return subprocess.run(tool_command(b), input=lines, capture_output=True, text=True, timeout=timeout)


def table_cells(b: BigtableConfig, table_id: str) -> list[tuple]:
    """Every cell of the table, every version: (row key, family, qualifier, timestamp, value)."""
    from google.cloud.bigtable.data import BigtableDataClient, ReadRowsQuery

    point_at_instance(b)
    client = BigtableDataClient(project=b.project)
    try:
        table = client.get_table(b.instance, table_id)
        return sorted((row.row_key, c.family, c.qualifier, c.timestamp_micros, c.value)
                      for row in table.read_rows(ReadRowsQuery()) for c in row.cells)
    finally:
        client.close()


def test_jvm_writer_leaves_the_python_writers_tables(emulator_host):
    records = make_records("t_ü%", 3000, 200, 1_767_225_600_000)
    records += make_records("ユーザー", 50, 7, 1_767_225_600_000)
    python, jvm = config(emulator_host, "py"), config(emulator_host, "jvm")
    for b in (python, jvm):
        schema.ensure_tables(b)
    settings = Settings()
    settings.bigtable = python
    asyncio.run(write_records(settings, records))

    result = run_tool(jvm, records)
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads(result.stdout.splitlines()[-1])["records"] == len(records)

    for table in ("events_table", "profiles_table"):
        expected = table_cells(python, getattr(python, table))
        assert expected and table_cells(jvm, getattr(jvm, table)) == expected, table


def test_jvm_writer_fails_on_a_permanent_error(emulator_host):
    b = config(emulator_host, "missing")  # no such tables: NOT_FOUND is not retried
    result = run_tool(b, make_records("t", 10, 2, 1_767_225_600_000), timeout=120)
    assert result.returncode != 0
    assert "rows could not be written to Bigtable" in result.stderr
