"""The Bigtable event log on the real emulator: the emulator process, the schema, and the reader
over rows written as the reference rows (sinks/bigtable/mutations.py) through the client's bulk
mutate. The job's writer, the JVM sink, has its own tests: tests/sinks/test_bigtable_sink_jvm.py.
"""

from __future__ import annotations

import random
import time
import uuid

import orjson
import pytest

from operators.events import Event, encode_event
from segstream import emulator
from segstream.config import Settings
from segstream.errors import StackError
from segstream.testing import free_port
from sinks.bigtable import BigtableUnavailable, keys, mutations, point_at_instance, schema
from sinks.bigtable.config import BigtableConfig
from sinks.bigtable.reader import read_history, read_profile

W = 4


# --- fixtures and helpers -------------------------------------------------------------------


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


def write_records(b: BigtableConfig, records, batch: int = 500) -> None:
    """Write the reference rows of (event_json, evaluation_json) records: mutations.event_entry and
    profile_entry, through the Python client's bulk mutate (every entry acknowledged or it raises)."""
    from google.cloud.bigtable.data import BigtableDataClient

    point_at_instance(b)
    client = BigtableDataClient(project=b.project)
    try:
        events, profiles = client.get_table(b.instance, b.events_table), client.get_table(b.instance, b.profiles_table)
        for at in range(0, len(records), batch):
            chunk = records[at:at + batch]
            rows = [mutations.entries(e.encode(), v.encode(), W) for e, v in chunk]
            events.bulk_mutate_rows([event for event, _ in rows])
            profiles.bulk_mutate_rows([profile for _, profile in rows])
    finally:
        client.close()


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


# --- schema, rows, reader -------------------------------------------------------------------


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
def test_reference_rows_store_each_event_exactly_once(settings, tenant):
    records = make_records(tenant, 500, users=7, now_ms=now_ms())
    write_records(settings.bigtable, records)
    assert_exactly(settings, tenant, records)
    assert_profiles(settings, tenant, records)


@pytest.mark.slow
def test_rewrites_are_idempotent(settings, tenant):
    records = make_records(tenant, 200, users=3, now_ms=now_ms())
    write_records(settings.bigtable, records)
    write_records(settings.bigtable, list(reversed(records)))  # a replay, even out of order
    assert_exactly(settings, tenant, records)  # also asserts a single version per cell
    assert_profiles(settings, tenant, records)


@pytest.mark.slow
def test_history_is_newest_first(settings, tenant):
    records = make_records(tenant, 120, users=3, now_ms=now_ms())
    random.Random(7).shuffle(records)
    write_records(settings.bigtable, records)
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
    write_records(settings.bigtable, [(encode_event(old).decode(), evaluation),
                                      (encode_event(new).decode(), evaluation)])
    assert [h["event_id"] for h in read_history(settings.bigtable, tenant, "u")] == ["new"]


@pytest.mark.slow
def test_profile_newest_seq_wins_whatever_the_write_order(settings, tenant):
    records = make_records(tenant, 40, users=1, now_ms=now_ms())
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    write_records(settings.bigtable, shuffled)
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
