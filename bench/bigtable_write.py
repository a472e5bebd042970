"""The JVM Bigtable sink's writer alone, ON THE EMULATOR (in-memory, local, 2-core box): the
ceiling of the job's Bigtable mirror on that emulator, not a production figure.

    .venv/bin/python bench/bigtable_write.py jvm-writer --records 200000
    .venv/bin/python bench/bigtable_write.py jvm-writer --records 200000 --emulator 127.0.0.1:18086

jvm-writer: io.segstream.flink.BigtableSinkTool from the job jar, i.e. BigtableSink's Writer outside
Flink: rows built and written through the client's batchers, then flushed. The records are read
before the clock starts. By default on a fresh emulator of its own; with --emulator on a running one
(fresh tables), e.g. the stack's, to compare with `bench/throughput.py backlog --bigtable` on the
same emulator (the emulator garbage-collects every table it holds about once a second, so what it
already holds slows it down). The run checks that the events table holds exactly the records.

The job with and without the sink: `bench/throughput.py backlog [--bigtable]` (docs/benchmarks.md,
section 7). The Python writer and its `writer`, `unbatched` and `flink` modes are gone with it.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from operators.events import Event, encode_event  # noqa: E402
from segstream import emulator  # noqa: E402
from segstream.config import Settings  # noqa: E402
from segstream.testing import free_port  # noqa: E402
from sinks.bigtable import keys, point_at_instance, schema  # noqa: E402
from sinks.bigtable.config import BigtableConfig  # noqa: E402

USERS = 1000


def record(tenant: str, i: int, stamp: int) -> tuple[str, str]:
    user, seq = f"user-{i % USERS}", i // USERS + 1
    event = Event(f"ev-{i}", user, stamp + i, "page_view", {"path": "/pricing", "ms": i % 997}, tenant)
    evaluation = {"event_id": event.event_id, "tenant": tenant, "user_id": user, "ts": event.ts, "seq": seq,
                  "stats": {"views": seq, "last_path": "/pricing"}, "segments": ["engaged"],
                  "entered": [], "exited": []}
    return encode_event(event).decode(), orjson.dumps(evaluation).decode()


def count_rows(settings: Settings, tenant: str) -> int:
    from google.cloud.bigtable.data import BigtableDataClient, ReadRowsQuery
    from google.cloud.bigtable.data import row_filters as rf

    point_at_instance(settings.bigtable)
    client = BigtableDataClient(project=settings.bigtable.project)
    try:
        table = client.get_table(settings.bigtable.instance, settings.bigtable.events_table)
        query = ReadRowsQuery(row_filter=rf.StripValueTransformerFilter(True))
        return sum(1 for row in table.read_rows(query) if row.row_key.split(b"_")[1] == keys.escape(tenant))
    finally:
        client.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def emulator_pid(host_port: str) -> int | None:
    """The pid of the cbtemulator serving host_port, if it runs on this machine."""
    port = host_port.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"cbtemulator") and b"-port" in args and port.encode() in args:
            return int(entry.name)
    return None


def sink_tool_command(settings: Settings, b: BigtableConfig) -> list[str]:
    """BigtableSinkTool from the job jar (Flink is provided: the PyFlink wheel's jars), writing to `b`;
    it reads [event JSON, evaluation JSON] lines on stdin."""
    import pyflink

    from segstream.jvm import require

    jar = require(settings.path(settings.flink.job_jar), "the job jar")
    classpath = f"{jar}:{Path(pyflink.__file__).parent / 'lib'}/*"
    return ["java", "-cp", classpath, "io.segstream.flink.BigtableSinkTool", b.emulator_host, b.project, b.instance,
            b.events_table, b.profiles_table, str(b.hash_prefix_hex)]


def bench_jvm_writer(settings: Settings, n: int, work: Path) -> None:
    tenant, stamp = f"bench-{uuid.uuid4().hex[:6]}", int(time.time() * 1000) - 3_600_000
    lines = work / "records.jsonl"
    lines.write_bytes(b"".join(orjson.dumps(list(record(tenant, i, stamp))) + b"\n" for i in range(n)))
    b = settings.bigtable
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    pid = emulator_pid(b.emulator_host)
    emulator_cpu = cpu_seconds(pid) if pid else float("nan")
    writer_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    with lines.open("rb") as stdin:
        out = subprocess.run(sink_tool_command(settings, b), stdin=stdin, capture_output=True, text=True,
                             check=True).stdout
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    writer_cpu_s = after.ru_utime + after.ru_stime - writer_cpu.ru_utime - writer_cpu.ru_stime
    emulator_cpu = (cpu_seconds(pid) if pid else float("nan")) - emulator_cpu
    # Both include what is not writing: the JVM's start-up and reading the records; the emulator nothing else.
    print(f"CPU: writer JVM {writer_cpu_s:.1f} s (start-up and input included), emulator {emulator_cpu:.1f} s "
          f"= {emulator_cpu / (2 * n) * 1e6:.0f} µs per row")
    result = orjson.loads(out.splitlines()[-1])
    report("jvm-writer", n, result["seconds"], settings, tenant)


def report(label: str, n: int, elapsed: float, settings: Settings, tenant: str) -> None:
    stored = count_rows(settings, tenant)
    verdict = "exact" if stored == n else f"MISMATCH: {stored} rows"
    print(f"{label}: {n} records = {2 * n} rows in {elapsed:.2f}s: "
          f"{n / elapsed:.0f} records/s, {2 * n / elapsed:.0f} rows/s (emulator); events table {verdict}")
    if stored != n:
        raise SystemExit(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["jvm-writer"])
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--emulator", help="host:port of a running emulator (default: start a fresh one)")
    a = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bigtable-bench-"))
    pid = None
    if a.emulator:
        host = a.emulator
    else:
        port = free_port()
        pid = emulator.start_emulator(port, work / "cbtemulator.log")
        host = f"127.0.0.1:{port}"
    try:
        emulator.wait_ready(host, timeout=20)
        settings = Settings()
        settings.bigtable.emulator_host = host
        run = f"bench-{uuid.uuid4().hex[:8]}"
        settings.bigtable.events_table, settings.bigtable.profiles_table = f"{run}-events", f"{run}-profiles"
        schema.ensure_tables(settings.bigtable)
        bench_jvm_writer(settings, a.records, work)
    finally:
        if pid is not None:
            emulator.stop_emulator(pid)


if __name__ == "__main__":
    main()
