"""`segstream recompute` on the real emulator, with crafted users written as the job's sink writes
them (sinks/bigtable/mutations.py, which the JVM sink equals cell for cell; no job needed): the
Beam pipeline (DirectRunner, multi_processing) recomputes every profile exactly, its report says
100 % equal, a corrupted profile shows up in it; explain reads one user; an unreachable Bigtable is
a one-line error. The job end to end: tests/integration/test_rules_at_runtime.py."""

from __future__ import annotations

import os
import subprocess
import sys

import msgspec
import pytest
from google.cloud.bigtable.data import BigtableDataClient

from batch import pipeline
from batch.compare import summarize
from batch.config import BatchConfig
from batch.explain import dry_run, explain, read_user
from batch.history import Reader, prefix_ranges, probe
from batch.rulelog import RuleHistory
from operators.rules import compile_rule
from segstream.config import PROJECT_ROOT
from segstream.testing import free_port
from sinks.bigtable import BigtableUnavailable, mutations, point_at_instance
from sinks.bigtable.config import BigtableConfig
from tests.batch.helpers import (
    catalogue,
    catalogue_dict,
    initial_rules,
    live_evaluations,
    mirror_records,
    rule_log,
    shopper,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

T0 = 1_767_225_600_000
BUYER = {"id": "buyer", "description": "bought twice", "when": "purchases >= 2"}
LOG = rule_log([("buyer", BUYER), ("new_visitor", None)])


@pytest.fixture(scope="module")
def crafted(bigtable_emulator):
    """(config, live evaluations) of 60 users in two tenants, rules changing mid-stream."""
    from sinks.bigtable.schema import ensure_tables

    b = BigtableConfig(emulator_host=bigtable_emulator[0], events_table="b-events", profiles_table="b-profiles")
    ensure_tables(b)
    events = []
    for i in range(60):
        tenant = "acme" if i % 3 == 0 else "default"
        events += shopper(f"user_{i}", 4 + i % 9, T0 + i * 60_000, tenant=tenant, amount=1000.0 * (i % 8))
    events.sort(key=lambda e: e.ts)
    versions = [min(2, i * 3 // len(events)) for i in range(len(events))]
    live = live_evaluations(events, versions, RuleHistory(catalogue(), initial_rules(), LOG))
    write(b, mirror_records(events, live))
    return b, live


def write(b: BigtableConfig, records: list[tuple[bytes, bytes]]) -> None:
    point_at_instance(b)
    client = BigtableDataClient(project=b.project)
    try:
        rows = [mutations.entries(e, v, b.hash_prefix_hex) for e, v in records]
        client.get_table(b.instance, b.events_table).bulk_mutate_rows([e for e, _ in rows])
        client.get_table(b.instance, b.profiles_table).bulk_mutate_rows([p for _, p in rows])
    finally:
        client.close()


def rules() -> pipeline.Rules:
    return pipeline.Rules(catalogue_dict(), initial_rules(), LOG)


def last_by_user(live: list[dict]) -> dict[tuple[str, str], dict]:
    last: dict[tuple[str, str], dict] = {}
    for d in live:
        last[(d["tenant"], d["user_id"])] = d
    return last


def test_recompute_reproduces_every_profile_and_the_report_is_100_percent(crafted, tmp_path):
    b, live = crafted
    result = pipeline.run(b, BatchConfig(key_ranges=8), rules(), pipeline.Selection(), tmp_path, report=True,
                          workers=2, progress=False)
    expected = last_by_user(live)
    recomputed = {(p["tenant"], p["user_id"]): p for p in result.lines("profiles")}
    assert set(recomputed) == set(expected)
    for user, p in recomputed.items():
        assert {k: v for k, v in p.items() if k != "last_event"} == expected[user]
    assert result.rows == len(live) and result.users == len(expected)
    assert any(d["rules_version"] == 2 for d in expected.values())  # users evaluated under a changed rule set
    report = summarize(result.lines("compare"), b.retention_days)
    assert report["equal_pct"] == 100.0 and report["compared_users"] == len(expected)
    assert report["missing_users"] == report["extra_users"] == report["past_retention"]["users"] == 0

    # `segstream rules try` over these recomputed profiles: a stricter high_value_member.
    stricter = compile_rule({"id": "high_value_member", "description": "stricter",
                             "when": "is_member == true && avg_purchase != null && avg_purchase > 6500.0"}, catalogue())
    answer = dry_run([stricter], catalogue(), result.lines("profiles"))["high_value_member"]
    now = {u for u, d in expected.items() if "high_value_member" in d["segments"]}
    would = {u for u, d in expected.items() if d["stats"]["is_member"] and (d["stats"]["avg_purchase"] or 0) > 6500}
    assert now and now - would  # the test is not vacuous: some would leave
    assert (answer["in_segment_now"], answer["would_be_in_segment"]) == (len(now), len(would))
    assert answer["would_exit"] == len(now - would) and answer["would_enter"] == len(would - now)
    assert set(answer["exit_examples"]) <= {f"{t}/{u}" for t, u in now - would}


def test_a_corrupted_profile_shows_up_in_the_report(crafted, tmp_path):
    b, live = crafted
    last = last_by_user(live)
    victim, other = ("acme", "user_3"), ("default", "user_4")
    bad = dict(last[victim], stats=dict(last[victim]["stats"], total_spent=-1.0))
    point_at_instance(b)
    client = BigtableDataClient(project=b.project)
    try:  # the same seq (cell time): the corrupted cells replace the true ones
        client.get_table(b.instance, b.profiles_table).bulk_mutate_rows(
            [mutations.profile_entry(msgspec.json.encode(bad), b.hash_prefix_hex)])
    finally:
        client.close()
    result = pipeline.run(b, BatchConfig(), rules(), pipeline.Selection(users=[victim, other]), tmp_path,
                          report=True, workers=1, progress=False)
    report = summarize(result.lines("compare"), b.retention_days)
    assert report["compared_users"] == 2 and report["equal_pct"] == 50.0
    (diff,) = report["differing"]
    assert (diff["tenant"], diff["user_id"]) == victim
    assert diff["first_difference"] == {"field": "stats.total_spent", "live": -1.0,
                                        "recomputed": last[victim]["stats"]["total_spent"]}
    assert report["stats"]["total_spent"]["mismatches"] == 1 and report["stats"]["total_spent"]["smape"] > 0


def test_reading_one_tenant_and_explaining_one_user(crafted):
    b, live = crafted
    reader = Reader(b)
    try:
        acme = {(r.tenant, r.user_id) for kr in prefix_ranges(4, 3) for r in reader.events(kr, "acme")}
        rows = [r for kr in prefix_ranges(4, 3) for r in reader.events(kr)]
    finally:
        reader.close()
    assert acme == {(d["tenant"], d["user_id"]) for d in live if d["tenant"] == "acme"}
    assert len(rows) == len(live) and {r.rules_version for r in rows} == {0, 1, 2}
    history = RuleHistory(catalogue(), initial_rules(), LOG)
    replayed = read_user(b, "default", "user_7", history)
    expected = [d for d in live if d["user_id"] == "user_7"]
    assert replayed.evaluations == {d["seq"]: d for d in expected}
    answer = explain(replayed, history, "high_value_member")
    assert answer["member"] == ("high_value_member" in expected[-1]["segments"])
    assert answer["stats"]["avg_purchase"] == expected[-1]["stats"]["avg_purchase"]


def test_an_unreachable_bigtable_is_a_one_line_error(tmp_path):
    b = BigtableConfig(emulator_host=f"127.0.0.1:{free_port()}")
    with pytest.raises(BigtableUnavailable, match="did not answer"):
        probe(b)
    env = dict(os.environ, SEGSTREAM_BIGTABLE__EMULATOR_HOST=b.emulator_host, COLUMNS="500")  # rich wraps at 80
    done = subprocess.run([sys.executable, "-m", "segstream.cli", "recompute", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "did not answer" in done.stderr, done.stderr
    # segstream backfill probes first too (before any JVM starts).
    done = subprocess.run([sys.executable, "-m", "segstream.cli", "backfill", "--savepoint", str(tmp_path / "sp"),
                           "--stats", str(PROJECT_ROOT / "conf" / "stats.yaml"), "--out", str(tmp_path / "new")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "did not answer" in done.stderr, done.stderr
