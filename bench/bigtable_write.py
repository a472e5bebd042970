"""Bigtable write rate ON THE EMULATOR (in-memory, local, 2-core box): not a production figure.

    .venv/bin/python bench/bigtable_write.py writer --records 50000
    .venv/bin/python bench/bigtable_write.py writer --records 50000 --outage-s 30
    .venv/bin/python bench/bigtable_write.py unbatched --records 5000
    .venv/bin/python bench/bigtable_write.py flink --records 30000 [--outage-s 30]
    .venv/bin/python bench/bigtable_write.py jvm-writer --records 200000

writer:    BigtableWriter alone, one concurrent write per record (event row + profile row).
unbatched: one MutateRow RPC per row, awaited one at a time (what batching saves).
jvm-writer: the JVM sink's writer alone (io.segstream.flink.BigtableSinkTool from the job jar): rows
           built and written through the client's batchers, flushed; the JVM job's Bigtable ceiling.
flink:     the same MiniCluster job with and without the Bigtable sink, thread mode (sink operator in
           process mode), so the difference is what the sink costs.
--outage-s pauses the emulator (SIGSTOP) for that long mid-run, then SIGCONT; the run must still end
with exactly the input in the table.
Every run checks at the end that the events table holds exactly the records written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import sysconfig
import tempfile
import threading
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
from sinks.bigtable import keys, mutations, schema  # noqa: E402
from sinks.bigtable.writer import BigtableWriter  # noqa: E402

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

    client = BigtableDataClient(project=settings.bigtable.project)
    try:
        table = client.get_table(settings.bigtable.instance, settings.bigtable.events_table)
        query = ReadRowsQuery(row_filter=rf.StripValueTransformerFilter(True))
        return sum(1 for row in table.read_rows(query) if row.row_key.split(b"_")[1] == keys.escape(tenant))
    finally:
        client.close()


def outage(pid: int, seconds: float, start_when, log=print) -> threading.Thread:
    """Pause the emulator for `seconds` once start_when() is true (checked every 50 ms)."""

    def run():
        while not start_when():
            time.sleep(0.05)
        os.kill(pid, signal.SIGSTOP)
        log(f"emulator paused (SIGSTOP) for {seconds:.0f}s")
        try:
            time.sleep(seconds)  # the outage itself
        finally:
            os.kill(pid, signal.SIGCONT)
        log("emulator resumed (SIGCONT)")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def bench_writer(settings: Settings, pid: int, n: int, outage_s: float) -> None:
    tenant, stamp = f"bench-{uuid.uuid4().hex[:6]}", int(time.time() * 1000) - 3_600_000
    records = [record(tenant, i, stamp) for i in range(n)]
    done = [0]

    async def run():
        b = settings.bigtable
        writer = BigtableWriter(b)

        async def one(event_json: str, evaluation_json: str):
            raw = event_json.encode()
            await asyncio.gather(
                writer.write(b.events_table,
                             [mutations.event_entry(mutations.decode_event(raw), raw, b.hash_prefix_hex)]),
                writer.write(b.profiles_table, [mutations.profile_entry(evaluation_json.encode(), b.hash_prefix_hex)]),
            )
            done[0] += 1

        # 1000 records in flight, like the sink's async capacity (workers, not a semaphore with
        # n waiters: asyncio wakes those in O(waiters), which would be what this measures).
        todo = iter(records)

        async def worker():
            for r in todo:
                await one(*r)

        try:
            await asyncio.gather(*(worker() for _ in range(1000)))
        finally:
            await writer.close()

    pause = outage(pid, outage_s, lambda: done[0] >= n // 4) if outage_s else None
    started, cpu = time.perf_counter(), time.process_time()
    asyncio.run(run())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if pause:
        pause.join()
    report("writer", n, elapsed, settings, tenant, outage_s)
    print(f"writer: client CPU {cpu / (2 * n) * 1e6:.0f} µs per row (this process; the emulator is another)")


def bench_unbatched(settings: Settings, n: int) -> None:
    from google.cloud.bigtable.data import BigtableDataClientAsync

    tenant, stamp = f"bench-{uuid.uuid4().hex[:6]}", int(time.time() * 1000) - 3_600_000
    records = [record(tenant, i, stamp) for i in range(n)]

    async def run():
        b = settings.bigtable
        client = BigtableDataClientAsync(project=b.project)
        events, profiles = client.get_table(b.instance, b.events_table), client.get_table(b.instance, b.profiles_table)
        for event_json, evaluation_json in records:
            raw = event_json.encode()
            e = mutations.event_entry(mutations.decode_event(raw), raw, b.hash_prefix_hex)
            p = mutations.profile_entry(evaluation_json.encode(), b.hash_prefix_hex)
            await events.mutate_row(e.row_key, list(e.mutations))
            await profiles.mutate_row(p.row_key, list(p.mutations))
        await client.close()

    started = time.perf_counter()
    asyncio.run(run())
    report("unbatched", n, time.perf_counter() - started, settings, tenant, 0)


def bench_flink(settings: Settings, pid: int, n: int, outage_s: float, work: Path) -> None:
    # Thread mode embeds CPython in the JVM, which needs the venv on PYTHONPATH (else "No module
    # named 'pemja'"); set before the JVM starts. Flink's log goes to the work dir.
    os.environ["PYTHONPATH"] = os.pathsep.join([sysconfig.get_paths()["purelib"], str(ROOT)])
    os.environ["FLINK_LOG_DIR"] = str(work / "flink-log")
    from pyflink.common import Configuration, Types, WatermarkStrategy
    from pyflink.datastream import MapFunction, StreamExecutionEnvironment
    from pyflink.datastream.connectors.number_seq import NumberSequenceSource

    from jobs.bigtable_sink import attach_bigtable_sink

    class ToRecord(MapFunction):
        def __init__(self, tenant: str, stamp: int):
            self.tenant, self.stamp = tenant, stamp

        def map(self, i):
            return record(self.tenant, i, self.stamp)

    def job(with_sink: bool) -> float:
        tenant, stamp = f"bench-{uuid.uuid4().hex[:6]}", int(time.time() * 1000) - 3_600_000
        conf = Configuration()
        for key, value in {
            "python.executable": sys.executable,
            "python.client.executable": sys.executable,
            "python.execution-mode": "thread",
            "execution.checkpointing.interval": "2s",
            "execution.checkpointing.dir": (work / "chk").as_uri(),
        }.items():
            conf.set_string(key, value)
        env = StreamExecutionEnvironment.get_execution_environment(conf)
        env.set_parallelism(1)
        numbers = env.from_source(NumberSequenceSource(0, n - 1), WatermarkStrategy.no_watermarks(), "numbers")
        stream = numbers.map(ToRecord(tenant, stamp), output_type=Types.TUPLE([Types.STRING(), Types.STRING()]))
        if with_sink:
            attach_bigtable_sink(stream, settings.bigtable)
            if outage_s:
                outage(pid, outage_s, lambda: count_rows(settings, tenant) >= n // 4)
        else:
            stream.filter(lambda r: False)  # same source and map, nothing written
        started = time.perf_counter()
        result = env.execute("bigtable-bench" if with_sink else "bigtable-bench-baseline")
        wall = time.perf_counter() - started
        net = result.get_net_runtime() / 1000
        label = "flink+sink" if with_sink else "flink baseline"
        print(f"{label}: job runtime {net:.1f}s (wall {wall:.1f}s)")
        if with_sink:
            report("flink+sink", n, net, settings, tenant, outage_s)
        return net

    base = job(False)
    sink = job(True)
    if not outage_s:  # with an outage the difference is mostly the outage
        print(f"sink cost: {(sink - base) / n * 1e6:.0f} µs per record "
              f"({n / base:.0f} records/s without the sink, {n / sink:.0f} with it)")


def bench_jvm_writer(settings: Settings, n: int, work: Path) -> None:
    import subprocess

    import pyflink

    from segstream.jvm import require

    tenant, stamp = f"bench-{uuid.uuid4().hex[:6]}", int(time.time() * 1000) - 3_600_000
    lines = work / "records.jsonl"
    lines.write_bytes(b"".join(orjson.dumps(list(record(tenant, i, stamp))) + b"\n" for i in range(n)))
    b = settings.bigtable
    jar = require(settings.path(settings.flink.job_jar), "the job jar")
    classpath = f"{jar}:{Path(pyflink.__file__).parent / 'lib'}/*"  # Flink is provided
    with lines.open("rb") as stdin:
        out = subprocess.run(["java", "-cp", classpath, "io.segstream.flink.BigtableSinkTool", b.emulator_host,
                              b.project, b.instance, b.events_table, b.profiles_table, str(b.hash_prefix_hex)],
                             stdin=stdin, capture_output=True, text=True, check=True).stdout
    result = orjson.loads(out.splitlines()[-1])
    report("jvm-writer", n, result["seconds"], settings, tenant, 0.0)


def report(label: str, n: int, elapsed: float, settings: Settings, tenant: str, outage_s: float) -> None:
    stored = count_rows(settings, tenant)
    verdict = "exact" if stored == n else f"MISMATCH: {stored} rows"
    extra = f", incl. a {outage_s:.0f}s outage" if outage_s else ""
    print(f"{label}: {n} records = {2 * n} rows in {elapsed:.2f}s{extra}: "
          f"{n / elapsed:.0f} records/s, {2 * n / elapsed:.0f} rows/s (emulator); events table {verdict}")
    if stored != n:
        raise SystemExit(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["writer", "unbatched", "flink", "jvm-writer"])
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--outage-s", type=float, default=0.0)
    a = p.parse_args()

    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="bigtable-bench-"))
    pid = emulator.start_emulator(port, work / "cbtemulator.log")
    try:
        emulator.wait_ready(f"127.0.0.1:{port}", timeout=20)
        settings = Settings()
        settings.bigtable.emulator_host = f"127.0.0.1:{port}"
        schema.ensure_tables(settings.bigtable)
        if a.what == "writer":
            bench_writer(settings, pid, a.records, a.outage_s)
        elif a.what == "jvm-writer":
            bench_jvm_writer(settings, a.records, work)
        elif a.what == "unbatched":
            bench_unbatched(settings, a.records)
        else:
            bench_flink(settings, pid, a.records, a.outage_s, work)
    finally:
        emulator.stop_emulator(pid)


if __name__ == "__main__":
    main()
