"""The Bigtable event log on the real emulator: writer, reader, outages, and the Flink sink.

Run as a script (`python tests/sinks/test_bigtable_emulator.py job ...`) this file is also the
small MiniCluster job the Flink tests start in a subprocess, so they can kill -9 it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

from operators.events import Event, encode_event
from segstream import emulator
from segstream.checkpoints import checkpoint_number, latest_checkpoint
from segstream.config import Settings
from segstream.errors import StackError
from segstream.testing import free_port, wait_for
from sinks.bigtable import BigtableUnavailable, keys, mutations, schema
from sinks.bigtable.reader import read_history, read_profile
from sinks.bigtable.writer import BigtableWriteError, BigtableWriter, WriterOptions

W = 4
THIS = Path(__file__).resolve()
ROOT = THIS.parents[2]


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def bigtable_emulator(tmp_path_factory):
    port = free_port()
    pid = emulator.start_emulator(port, tmp_path_factory.mktemp("emulator") / "cbtemulator.log")
    try:
        emulator.wait_ready(f"127.0.0.1:{port}", timeout=20)
        yield f"127.0.0.1:{port}", pid
    finally:
        emulator.stop_emulator(pid)


@pytest.fixture(scope="module")
def settings(bigtable_emulator) -> Settings:
    s = Settings()
    s.bigtable.emulator_host = bigtable_emulator[0]
    schema.ensure_tables(s.bigtable)
    return s


@pytest.fixture
def tenant() -> str:
    """A tenant no other test writes to: the tests share one emulator, never each other's rows."""
    return f"t-{uuid.uuid4().hex[:8]}"


def make_record(tenant: str, i: int, users: int, now_ms: int) -> tuple[str, str]:
    """The i-th (event_json, evaluation_json) of a stream over `users` users (seq counts per user).
    Event times are recent (inside retention), and two events share each millisecond."""
    user, seq = f"u_{i % users}", i // users + 1  # "_" inside ids exercises the key escaping
    event = Event(f"ev_{i}", user, now_ms - 600_000 + i // 2, "click", {"i": i}, tenant)
    evaluation = {
        "event_id": event.event_id,
        "tenant": tenant,
        "user_id": user,
        "ts": event.ts,
        "seq": seq,
        "stats": {"count": seq},
        "segments": ["repeat"] if seq > 1 else [],
        "entered": [],
        "exited": [],
    }
    return encode_event(event).decode(), orjson.dumps(evaluation).decode()


def make_records(tenant: str, n: int, users: int, now_ms: int) -> list[tuple[str, str]]:
    return [make_record(tenant, i, users, now_ms) for i in range(n)]


async def write_records(settings: Settings, records, options: WriterOptions = WriterOptions(), progress=None):
    """Write like the sink does: one concurrent write per record, event row + profile row."""
    b = settings.bigtable
    writer = BigtableWriter(b, options)

    async def one(event_json: str, evaluation_json: str):
        raw = event_json.encode()
        await asyncio.gather(
            writer.write(b.events_table, [mutations.event_entry(mutations.decode_event(raw), raw, W)]),
            writer.write(b.profiles_table, [mutations.profile_entry(evaluation_json.encode(), W)]),
        )
        if progress is not None:
            progress.append(1)

    try:
        await asyncio.gather(*(one(*r) for r in records))
    finally:
        await writer.close()


def stored_events(settings: Settings, tenant: str) -> dict[bytes, list]:
    """{row key: every cell} of the tenant's event rows, all versions, no filter."""
    from google.cloud.bigtable.data import BigtableDataClient, ReadRowsQuery

    client = BigtableDataClient(project=settings.bigtable.project)
    try:
        table = client.get_table(settings.bigtable.instance, settings.bigtable.events_table)
        return {
            row.row_key: row.cells
            for row in table.read_rows(ReadRowsQuery())
            if row.row_key.split(b"_")[1] == keys.escape(tenant)
        }
    finally:
        client.close()


def assert_exactly(settings: Settings, tenant: str, records) -> None:
    """The table holds exactly these events: right keys, payload as sent, one version per cell."""
    expected = {}
    for event_json, _ in records:
        e = mutations.decode_event(event_json.encode())
        expected[keys.event_key(e.tenant, e.user_id, e.ts, e.event_id, W)] = (event_json.encode(), e.ts * 1000)
    stored = stored_events(settings, tenant)
    assert set(stored) == set(expected), (
        f"{len(set(expected) - set(stored))} missing, {len(set(stored) - set(expected))} unexpected"
    )
    for key, cells in stored.items():
        payload, micros = expected[key]
        assert [(c.qualifier, c.value, c.timestamp_micros) for c in cells if c.qualifier == schema.PAYLOAD] == [
            (schema.PAYLOAD, payload, micros)
        ]


def final_profiles(records) -> dict[str, dict]:
    last = {}
    for _, evaluation_json in records:
        ev = orjson.loads(evaluation_json)
        last[ev["user_id"]] = ev
    return last


def assert_profiles(settings: Settings, tenant: str, records) -> None:
    for user, ev in final_profiles(records).items():
        profile = read_profile(settings.bigtable, tenant, user)
        assert profile is not None and (profile["seq"], profile["event_id"], profile["stats"]) == (
            ev["seq"], ev["event_id"], ev["stats"],
        ), user


@pytest.fixture
def paused(bigtable_emulator):
    """pause()/resume() the emulator process (SIGSTOP/SIGCONT); always resumed at the end."""
    pid = bigtable_emulator[1]

    class Pause:
        def pause(self):
            os.kill(pid, signal.SIGSTOP)

        def resume(self):
            os.kill(pid, signal.SIGCONT)

    yield Pause()
    os.kill(pid, signal.SIGCONT)


def now_ms() -> int:
    return int(time.time() * 1000)


# --- emulator process management -------------------------------------------------------------


@pytest.mark.slow
def test_emulator_refuses_a_taken_port(bigtable_emulator, tmp_path):
    port = int(bigtable_emulator[0].rsplit(":", 1)[1])
    with pytest.raises(StackError, match=f"port {port} is already in use"):
        emulator.start_emulator(port, tmp_path / "log")
    assert emulator.is_running(bigtable_emulator[1])


def test_missing_emulator_binary_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(emulator, "KNOWN_PATH", tmp_path / "nowhere")
    monkeypatch.setattr(emulator, "DEB_PACKAGE", "no-such-package-xyz")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match="Bigtable emulator not found"):
        emulator.start_emulator(free_port(), tmp_path / "log")


# --- schema, writer, reader -------------------------------------------------------------------


@pytest.mark.slow
def test_ensure_tables_is_idempotent_and_sets_gc_rules(settings):
    schema.ensure_tables(settings.bigtable)  # second run: no error, nothing changes
    from google.cloud.bigtable import Client

    instance = Client(project=settings.bigtable.project, admin=True).instance(settings.bigtable.instance)
    events = instance.table(settings.bigtable.events_table).list_column_families()
    profiles = instance.table(settings.bigtable.profiles_table).list_column_families()
    assert events[schema.EVENTS_FAMILY].gc_rule.to_pb() == schema.gc_rules(settings.bigtable)["events"]["e"].to_pb()
    assert "max_age" in str(events[schema.EVENTS_FAMILY].gc_rule.to_pb())
    assert profiles[schema.PROFILE_FAMILY].gc_rule.to_pb().max_num_versions == 1


@pytest.mark.slow
def test_writer_stores_each_event_exactly_once(settings, tenant):
    records = make_records(tenant, 500, users=7, now_ms=now_ms())
    asyncio.run(write_records(settings, records))
    assert_exactly(settings, tenant, records)
    assert_profiles(settings, tenant, records)


@pytest.mark.slow
def test_rewrites_are_idempotent(settings, tenant):
    records = make_records(tenant, 200, users=3, now_ms=now_ms())
    asyncio.run(write_records(settings, records))
    asyncio.run(write_records(settings, list(reversed(records))))  # a replay, even out of order
    assert_exactly(settings, tenant, records)  # also asserts a single version per cell
    assert_profiles(settings, tenant, records)


@pytest.mark.slow
def test_history_is_newest_first(settings, tenant):
    records = make_records(tenant, 120, users=3, now_ms=now_ms())
    random.Random(7).shuffle(records)
    asyncio.run(write_records(settings, records))
    mine = [orjson.loads(e) for e, _ in records if orjson.loads(e)["user_id"] == "u_1"]

    history = read_history(settings.bigtable, tenant, "u_1")
    assert sorted(h["event_id"] for h in history) == sorted(e["event_id"] for e in mine)
    stamps = [h["ts"] for h in history]
    assert stamps == sorted(stamps, reverse=True)
    assert history[0] == max(mine, key=lambda e: (e["ts"], e["event_id"]))  # payload as sent

    assert read_history(settings.bigtable, tenant, "u_1", limit=5) == history[:5]
    since = stamps[10]
    assert read_history(settings.bigtable, tenant, "u_1", since_ts=since) == [h for h in history if h["ts"] >= since]
    assert read_history(settings.bigtable, tenant, "u_") == []  # a prefix of "u_1" is another (empty) user


@pytest.mark.slow
def test_history_hides_events_past_retention(settings, tenant):
    old = Event("old", "u", now_ms() - (settings.bigtable.retention_days + 1) * 86_400_000, "x", tenant=tenant)
    new = Event("new", "u", now_ms(), "x", tenant=tenant)
    evaluation = orjson.dumps({"event_id": "new", "tenant": tenant, "user_id": "u", "ts": new.ts, "seq": 2,
                               "stats": {}, "segments": [], "entered": [], "exited": []}).decode()
    asyncio.run(write_records(settings, [(encode_event(old).decode(), evaluation),
                                         (encode_event(new).decode(), evaluation)]))
    assert [h["event_id"] for h in read_history(settings.bigtable, tenant, "u")] == ["new"]


@pytest.mark.slow
def test_profile_newest_seq_wins_whatever_the_write_order(settings, tenant):
    records = make_records(tenant, 40, users=1, now_ms=now_ms())
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    asyncio.run(write_records(settings, shuffled))
    profile = read_profile(settings.bigtable, tenant, "u_0")
    assert profile["seq"] == 40 and profile["event_id"] == "ev_39" and profile["stats"] == {"count": 40}
    assert read_profile(settings.bigtable, tenant, "nobody") is None


def test_reads_fail_fast_when_bigtable_is_unreachable():
    s = Settings()
    s.bigtable.emulator_host = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(BigtableUnavailable, match="did not answer"):
        read_profile(s.bigtable, "t", "u")
    assert time.monotonic() - started < 15


@pytest.mark.slow
def test_a_permanent_error_surfaces_instead_of_retrying(settings):
    async def write_to_missing_table():
        writer = BigtableWriter(settings.bigtable)
        try:
            event = Event("e", "u", now_ms(), "x")
            raw = encode_event(event)
            await writer.write("no-such-table", [mutations.event_entry(event, raw, W)])
        finally:
            await writer.close()

    started = time.monotonic()
    with pytest.raises(BigtableWriteError, match="permanent error"):
        asyncio.run(write_to_missing_table())
    assert time.monotonic() - started < 10


def run_in_thread(coro_fn):
    """Run an async function on its own loop in a thread; return (thread, errors list)."""
    errors: list[BaseException] = []

    def target():
        try:
            asyncio.run(coro_fn())
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, errors


@pytest.mark.slow
def test_outage_of_a_few_seconds_loses_nothing(settings, tenant, paused, caplog):
    caplog.set_level(logging.WARNING, logger="sinks.bigtable.writer")
    records = make_records(tenant, 4000, users=50, now_ms=now_ms())
    done: list[int] = []
    options = WriterOptions(attempt_timeout_s=1.0, max_pending_rows=2000)  # small buffer: backpressure shows
    thread, errors = run_in_thread(lambda: write_records(settings, records, options, progress=done))

    wait_for(lambda: len(done) >= 200, 30, "the first writes", 0.1)
    paused.pause()
    time.sleep(1)  # requests already on the wire settle (they can't: the server is stopped)
    during = len(done)
    time.sleep(4)  # the outage itself
    assert len(done) == during < len(records), "writes were acknowledged while Bigtable was down"
    paused.resume()

    thread.join(timeout=120)
    assert not thread.is_alive() and not errors, errors
    assert any("not yet written" in r.message for r in caplog.records)  # it backed off and said so
    assert_exactly(settings, tenant, records)
    assert_profiles(settings, tenant, records)


@pytest.mark.slow
def test_an_outage_longer_than_the_give_up_time_fails_loudly(settings, tenant, paused):
    records = make_records(tenant, 50, users=5, now_ms=now_ms())
    options = WriterOptions(attempt_timeout_s=0.5, give_up_after_s=2.0)
    paused.pause()
    thread, errors = run_in_thread(lambda: write_records(settings, records, options))
    thread.join(timeout=30)
    paused.resume()
    assert not thread.is_alive()
    assert errors and isinstance(errors[0], BigtableWriteError) and "still failing after 2s" in str(errors[0])


# --- the Flink sink on a MiniCluster ------------------------------------------------------------


def job_env(log_dir: Path) -> dict[str, str]:
    # In thread mode the JVM embeds CPython, which does not see the venv's site-packages unless
    # told: without this, thread mode fails with "No module named 'pemja'".
    paths = [sysconfig.get_paths()["purelib"], str(ROOT), os.environ.get("PYTHONPATH", "")]
    # Flink's own log goes next to the test's files, not into the shared pyflink/log.
    return os.environ | {"PYTHONPATH": os.pathsep.join(p for p in paths if p), "FLINK_LOG_DIR": str(log_dir)}


def start_job(host_port, tenant, n, users, stamp, mode, checkpoints, marker, pace_ms, restore=None):
    cmd = [sys.executable, str(THIS), "job", host_port, tenant, str(n), str(users), str(stamp), mode,
           str(checkpoints), str(marker), str(pace_ms)]
    if restore:
        cmd.append(str(restore))
    log = open(marker.with_suffix(".log"), "ab")
    # Own session: kill -9 of the group takes the client, its JVM and the Python workers together.
    return subprocess.Popen(cmd, env=job_env(marker.parent / "flink-log"), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish(proc, timeout: float, marker: Path) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rc = "timeout"
    log = marker.with_suffix(".log").read_text(errors="replace")
    assert rc == 0, f"job exited {rc}:\n{log[-4000:]}"


def latest_checkpoint_number(root: Path) -> int:
    """The number of the newest complete checkpoint (0: none). Flink keeps only the newest one, so
    the count of checkpoint directories says nothing about progress."""
    latest = latest_checkpoint(root)
    return checkpoint_number(latest) if latest else 0


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["thread", "process"])
def test_flink_job_writes_through_the_async_sink(settings, bigtable_emulator, tenant, tmp_path, mode):
    stamp, n, users = now_ms(), 300, 6
    marker = tmp_path / "seen.txt"
    proc = start_job(bigtable_emulator[0], tenant, n, users, stamp, mode, tmp_path / "chk", marker, pace_ms=0)
    finish(proc, 240, marker)
    records = make_records(tenant, n, users, stamp)
    assert_exactly(settings, tenant, records)
    assert_profiles(settings, tenant, records)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_flink_job_fails_when_writes_keep_failing(bigtable_emulator, tenant, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGSTREAM_BIGTABLE__EVENTS_TABLE", "no-such-table")  # read by the job's Settings()
    marker = tmp_path / "seen.txt"
    proc = start_job(bigtable_emulator[0], tenant, 50, 5, now_ms(), "thread", tmp_path / "chk", marker, pace_ms=0)
    try:
        rc = proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    log = marker.with_suffix(".log").read_text(errors="replace")
    assert rc != 0, "the job finished although no event could be written"
    assert "BigtableWriteError" in log and "no-such-table (permanent error)" in log, log[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_kill_9_and_restore_from_checkpoint_leaves_exactly_the_input(settings, bigtable_emulator, tenant, tmp_path):
    stamp, n, users = now_ms(), 3000, 20
    checkpoints = tmp_path / "chk"
    first, second = tmp_path / "run1.txt", tmp_path / "run2.txt"
    # Paced at 10 ms an event (30 s in all): the source runs ahead while the sink's Python worker
    # starts, and a checkpoint barrier waits behind that backlog; it must be a small part of the input.
    proc = start_job(bigtable_emulator[0], tenant, n, users, stamp, "thread", checkpoints, first, pace_ms=10)
    try:
        # Mid-stream: rows are arriving, a checkpoint completed after that, most input is still to come.
        wait_for(lambda: len(stored_events(settings, tenant)) >= n // 10, 180, "the first rows", interval=0.2)
        taken = latest_checkpoint_number(checkpoints)
        wait_for(lambda: latest_checkpoint_number(checkpoints) > taken, 60, "a checkpoint after those rows", 0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    written_at_kill = len(stored_events(settings, tenant))
    assert 0 < written_at_kill < n, f"not killed mid-stream ({written_at_kill} of {n} written)"

    proc = start_job(bigtable_emulator[0], tenant, n, users, stamp, "thread", checkpoints, second, pace_ms=0,
                     restore=latest_checkpoint(checkpoints))
    finish(proc, 240, second)

    replayed = second.read_text().split()
    assert 0 < len(replayed) < n, "the second run did not resume from the checkpoint"
    assert set(first.read_text().split()) | set(replayed) >= {f"ev_{i}" for i in range(n)}
    records = make_records(tenant, n, users, stamp)
    assert_exactly(settings, tenant, records)
    assert_profiles(settings, tenant, records)


# --- the job itself (run in a subprocess by the tests above) ----------------------------------------


def run_job(argv: list[str]) -> None:
    from pyflink.common import Configuration, Types, WatermarkStrategy
    from pyflink.datastream import MapFunction, StreamExecutionEnvironment
    from pyflink.datastream.connectors.number_seq import NumberSequenceSource

    from jobs.bigtable_sink import attach_bigtable_sink

    p = argparse.ArgumentParser()
    for name in ("emulator", "tenant", "n", "users", "stamp", "mode", "checkpoints", "marker", "pace_ms"):
        p.add_argument(name)
    p.add_argument("restore", nargs="?")
    a = p.parse_args(argv)

    settings = Settings()
    settings.bigtable.emulator_host = a.emulator
    conf = Configuration()
    for key, value in {
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "python.execution-mode": a.mode,
        "execution.checkpointing.interval": "300ms",
        "execution.checkpointing.dir": Path(a.checkpoints).as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "restart-strategy.type": "none",
    }.items():
        conf.set_string(key, value)
    if a.restore:
        conf.set_string("execution.state-recovery.path", Path(a.restore).as_uri())
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(1)

    class ToRecord(MapFunction):
        """i -> the i-th record; slow (so a kill lands mid-way), noting what this run processed."""

        def __init__(self, tenant: str, users: int, stamp: int, pace_s: float, marker: str):
            self.args, self.pace_s, self.marker = (tenant, users, stamp), pace_s, marker

        def map(self, i):
            time.sleep(self.pace_s)
            tenant, users, stamp = self.args
            with open(self.marker, "a") as f:
                f.write(f"ev_{i}\n")
            return make_record(tenant, i, users, stamp)

    # A checkpointed, replayable source (env.from_collection is neither: it restarts from scratch).
    numbers = env.from_source(NumberSequenceSource(0, int(a.n) - 1), WatermarkStrategy.no_watermarks(), "numbers")
    to_record = ToRecord(a.tenant, int(a.users), int(a.stamp), int(a.pace_ms) / 1000, a.marker)
    stream = numbers.map(to_record, output_type=Types.TUPLE([Types.STRING(), Types.STRING()]))
    attach_bigtable_sink(stream, settings.bigtable)
    env.execute("bigtable-sink-test")


if __name__ == "__main__" and sys.argv[1:2] == ["job"]:
    run_job(sys.argv[2:])
