"""The JVM Bigtable sink's writer (io.segstream.flink.BigtableSink, run from the shaded job jar by
BigtableSinkTool) on the real emulator: for the same mirror records it leaves the same tables, cell
for cell (keys, values, timestamps), as the reference rows of sinks/bigtable/mutations.py; an
emulator outage of a few seconds loses nothing; an outage longer than the give-up time, and a
permanent error, fail it (non-zero exit, the rows named) instead of dropping rows.

In the job the same Writer runs as the Sink V2 writer, with flush() before every checkpoint
barrier; the whole job across kill -9 is tests/integration/test_recovery.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from segstream.config import Settings
from segstream.jvm import require
from segstream.testing import wait_for
from sinks.bigtable import point_at_instance, schema
from sinks.bigtable.config import BigtableConfig
from tests.sinks.test_bigtable_emulator import make_records, write_records

TOOL = "io.segstream.flink.BigtableSinkTool"
STAMP = 1_767_225_600_000
PROFILE_LINGER_S = 1.0  # BigtableSink.PROFILE_LINGER_MS


@pytest.fixture(scope="module")
def emulator_host(bigtable_emulator):
    return bigtable_emulator[0]


@pytest.fixture
def paused(bigtable_emulator):
    """pause()/resume() the emulator process (SIGSTOP/SIGCONT): it keeps its connections and
    answers nothing, like a server that hangs. Always resumed at the end."""
    pid = bigtable_emulator[1]

    class Pause:
        def pause(self):
            os.kill(pid, signal.SIGSTOP)

        def resume(self):
            os.kill(pid, signal.SIGCONT)

    yield Pause()
    os.kill(pid, signal.SIGCONT)


def config(emulator_host: str, prefix: str) -> BigtableConfig:
    return BigtableConfig(emulator_host=emulator_host, events_table=f"{prefix}-events",
                          profiles_table=f"{prefix}-profiles")


def tool_command(b: BigtableConfig, *options: str) -> list[str]:
    """BigtableSinkTool from the job jar, with the PyFlink wheel's Flink jars (Flink is provided)."""
    import pyflink

    settings = Settings()
    jar = require(settings.path(settings.flink.job_jar), "the job jar")
    flink_lib = Path(pyflink.__file__).parent / "lib"
    return ["java", "-cp", f"{jar}:{flink_lib}/*", TOOL, *options, b.emulator_host, b.project, b.instance,
            b.events_table, b.profiles_table, str(b.hash_prefix_hex)]


def lines(records: list[tuple[str, str]]) -> str:
    return "".join(json.dumps(list(r)) + "\n" for r in records)


def run_tool(b: BigtableConfig, records: list[tuple[str, str]], *options: str,
             timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(tool_command(b, *options), input=lines(records), capture_output=True, text=True,
                          timeout=timeout)


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


def reference_tables(emulator_host: str, prefix: str, records) -> BigtableConfig:
    """Tables holding the reference rows of `records` (mutations.py through the Python client)."""
    b = config(emulator_host, prefix)
    schema.ensure_tables(b)
    write_records(b, records)
    return b


def newest(cells: list[tuple]) -> list[tuple]:
    """The newest version of each column (what a reader gets with CellsColumnLimitFilter(1))."""
    best: dict[tuple, tuple] = {}
    for cell in cells:
        column = cell[:3]
        if column not in best or cell[3] > best[column][3]:
            best[column] = cell
    return sorted(best.values())


def assert_same_tables(jvm: BigtableConfig, reference: BigtableConfig) -> None:
    """Every event cell as the reference writes it; the profiles' newest cells as the reference's.
    The reference writes every evaluation's profile version; the sink only the newest per user
    within its profile linger, so older versions may be missing (the family keeps one anyway)."""
    expected = table_cells(reference, reference.events_table)
    assert expected and table_cells(jvm, jvm.events_table) == expected, "events"
    expected = newest(table_cells(reference, reference.profiles_table))
    assert expected and newest(table_cells(jvm, jvm.profiles_table)) == expected, "profiles"


@pytest.mark.slow
def test_jvm_writer_leaves_the_reference_rows(emulator_host):
    records = make_records("t_ü%", 3000, 200, STAMP)
    records += make_records("ユーザー", 50, 7, STAMP)
    reference = reference_tables(emulator_host, "ref", records)
    jvm = config(emulator_host, "jvm")
    schema.ensure_tables(jvm)

    started = time.monotonic()
    result = run_tool(jvm, records)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads(result.stdout.splitlines()[-1])["records"] == len(records)
    assert_same_tables(jvm, reference)
    # Profiles are coalesced: a user's profile row is written at most once per linger (1 s) and at
    # the final flush, whatever the number of its evaluations (3050 of 207 users). The bound comes
    # from the run's own duration, so a loaded machine (a slower run) cannot break it.
    profiles = table_cells(jvm, jvm.profiles_table)
    writes = {(c[0], c[3]) for c in profiles}  # one version of the row per write
    assert len({c[0] for c in profiles}) == 207
    assert len(writes) <= 207 * (int(elapsed / PROFILE_LINGER_S) + 2), (len(writes), elapsed)


@pytest.mark.slow
def test_jvm_writer_fails_on_a_permanent_error(emulator_host):
    b = config(emulator_host, "missing")  # no such tables: NOT_FOUND is not retried
    started = time.monotonic()
    result = run_tool(b, make_records("t", 10, 2, STAMP), timeout=120)
    assert result.returncode != 0
    assert "rows could not be written to Bigtable" in result.stderr and "NOT_FOUND" in result.stderr, \
        result.stderr[-3000:]
    # Not retried for the give-up time (300 s): the JVM's start-up is most of this.
    assert time.monotonic() - started < 60


class Tool:
    """BigtableSinkTool --stream in the background: records go in as the test writes them."""

    def __init__(self, b: BigtableConfig, *options: str):
        self.proc = subprocess.Popen(tool_command(b, "--stream", *options), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def send(self, records) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(lines(records))
        self.proc.stdin.flush()

    def end_input(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def flushing(self) -> bool:
        return any(line.startswith("flushing after") for line in self.stderr)

    def wait(self, timeout: float) -> tuple[int, str, str]:
        try:
            rc = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self._reader.join(10)
        return rc, out, "".join(self.stderr)


def count_rows(b: BigtableConfig) -> int:
    return len({cell[0] for cell in table_cells(b, b.events_table)})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_outage_of_a_few_seconds_loses_nothing(emulator_host, paused):
    """Half the records written and acknowledged, then the emulator stops answering; the other half
    goes in, and the final flush (the one before a checkpoint barrier, in the job) waits out the
    outage instead of returning: on SIGCONT every row is there, exactly the reference rows."""
    records = make_records("outage", 4000, 50, STAMP)
    reference = reference_tables(emulator_host, "outage-ref", records)
    jvm = config(emulator_host, "outage")
    schema.ensure_tables(jvm)

    tool = Tool(jvm)
    try:
        tool.send(records[:2000])
        wait_for(lambda: count_rows(jvm) > 0 or tool.proc.poll() is not None, 120, "the first rows", 0.2)
        assert tool.proc.poll() is None, "".join(tool.stderr)[-3000:]
        paused.pause()
        tool.send(records[2000:])
        tool.end_input()
        wait_for(lambda: tool.flushing() or tool.proc.poll() is not None, 60, "the final flush", 0.1)
        time.sleep(5)  # the outage itself
        assert tool.proc.poll() is None, "the flush returned while Bigtable was not answering"
        paused.resume()
        rc, out, err = tool.wait(120)
    finally:
        paused.resume()
        if tool.proc.poll() is None:
            tool.proc.kill()
    assert rc == 0, err[-4000:]
    assert json.loads(out.splitlines()[-1])["records"] == len(records)
    assert_same_tables(jvm, reference)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_outage_longer_than_the_give_up_time_fails_loudly(emulator_host, paused):
    """Bigtable does not answer for longer than the give-up time (3 s here, 300 s in the job): the
    writer's flush throws, naming the rows, rather than returning with rows dropped."""
    jvm = config(emulator_host, "give-up")
    schema.ensure_tables(jvm)
    tool = Tool(jvm, "--give-up-after-s", "3")
    try:
        paused.pause()  # before any row is sent: none can be acknowledged
        tool.send(make_records("give-up", 50, 5, STAMP))
        tool.end_input()
        rc, _, err = tool.wait(120)  # still paused: it must give up on its own
    finally:
        paused.resume()
    assert rc != 0, "the writer succeeded although Bigtable never answered"
    assert "rows could not be written to Bigtable" in err and "DEADLINE_EXCEEDED" in err, err[-4000:]
