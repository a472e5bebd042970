"""The batch layer's logic without Bigtable or Beam: key ranges, the rule log, one user's replay,
the comparison and the report, explain and the rule dry run, on crafted users."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch.compare import compare_user, summarize
from batch.explain import dry_run, explain, top_level_clauses
from batch.history import LiveProfile, prefix_ranges, split_profile_key, unescape
from batch.replay import replay_user
from batch.rulelog import RuleHistory, RuleLogGap
from operators.rules import compile_rule
from segstream import reference
from sinks.bigtable import keys
from tests.batch.helpers import (
    catalogue,
    initial_rules,
    live_evaluations,
    rows_of,
    rule_log,
    shopper,
)

T0 = 1_767_225_600_000
BUYER = {"id": "buyer", "description": "bought twice", "when": "purchases >= 2"}


@pytest.mark.parametrize("width,parts,fraction", [(1, 1, 1.0), (4, 16, 1.0), (4, 7, 1.0), (2, 300, 1.0),
                                                  (4, 4, 0.25), (3, 5, 0.1)])
def test_prefix_ranges_tile_the_hash_space_or_its_first_fraction(width, parts, fraction):
    ranges = prefix_ranges(width, parts, fraction)
    assert ranges[0].start == b""
    for a, b in zip(ranges, ranges[1:], strict=False):
        assert a.end == b.start and a.end is not None and a.start < a.end
    top = 16**width if fraction == 1 else round(16**width * fraction)
    assert ranges[-1].end == (None if fraction == 1 else format(top, f"0{width}x").encode())


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_profile_keys_split_back_into_tenant_and_user(tenant, user):
    assert split_profile_key(keys.profile_key(tenant, user, 4)) == (tenant, user)
    assert unescape(keys.escape(user)) == user


def test_rule_history_rebuilds_each_version_as_the_job_applied_it():
    log = rule_log([("buyer", BUYER), ("new_visitor", None)])
    log.insert(2, {"version": 2, "rule_id": "bad", "value": "{", "accepted": False, "reason": "not JSON"})
    log[3]["version"] = 3  # the refused record counts as a version, as in the job
    history = RuleHistory(catalogue(), [], log)
    initial = {r["id"] for r in initial_rules()}
    assert set(history.rule_set(0).rules) == initial
    assert set(history.rule_set(1).rules) == initial | {"buyer"}
    assert set(history.rule_set(2).rules) == initial | {"buyer"}
    assert set(history.rule_set(3).rules) == (initial | {"buyer"}) - {"new_visitor"}
    assert set(history.rule_set(None).rules) == set(history.rule_set(3).rules)
    with pytest.raises(RuleLogGap, match="rules_version 9"):
        history.rule_set(9)
    # A restart with other initial rules: they apply from the version it restarted at.
    log.append({"version": 3, "initial": json.dumps([BUYER])})
    assert set(RuleHistory(catalogue(), [], log).rule_set(3).rules) == {"buyer"}
    assert set(RuleHistory(catalogue(), [], log).rule_set(1).rules) == initial | {"buyer"}


def test_replay_in_seq_order_under_each_events_rules_version_equals_the_live_evaluations():
    log = rule_log([("buyer", BUYER), ("buyer", None)])
    history = RuleHistory(catalogue(), initial_rules(), log)
    events = shopper("u1", 12, T0) + shopper("u2", 5, T0 + 30 * 60_000, tenant="acme")
    events.sort(key=lambda e: e.ts)
    versions = [min(2, i // 6) for i in range(len(events))]  # the rule changes land mid-stream
    live = live_evaluations(events, versions, history)
    rows = rows_of(events, live)
    rows.reverse()  # the table returns them newest first; seq restores the order
    for tenant, user in (("default", "u1"), ("acme", "u2")):
        mine = [r for r in rows if (r.tenant, r.user_id) == (tenant, user)]
        replayed = replay_user(tenant, user, mine, RuleHistory(catalogue(), initial_rules(), log))
        expected = {d["seq"]: d for d in live if (d["tenant"], d["user_id"]) == (tenant, user)}
        assert replayed.evaluations == expected and replayed.complete
    # The live segments really did change with the versions (the test is not vacuous).
    assert any("buyer" in d["segments"] for d in live) and "buyer" not in live[-1]["segments"]


def test_a_history_past_the_retention_or_with_holes_is_incomplete():
    history = RuleHistory(catalogue(), initial_rules())
    events = shopper("u", 6, T0)
    rows = rows_of(events, live_evaluations(events, [0] * 6, history))
    assert not replay_user("default", "u", rows[2:], history).complete  # first seq 3
    holed = replay_user("default", "u", rows[:2] + rows[3:], history)
    assert holed.gaps == [3] and not holed.complete


def profile_of(evaluation: dict, **over) -> LiveProfile:
    d = dict(evaluation, **over)
    return LiveProfile(d["tenant"], d["user_id"], d["seq"], d.get("rules_version"), d["ts"], d["stats"],
                       d["segments"])


def test_report_counts_equal_differing_missing_extra_and_retention_apart():
    history = RuleHistory(catalogue(), initial_rules())
    users = {u: shopper(u, 7, T0) for u in ("a", "b", "c", "d", "e")}
    replays, lives = {}, {}
    for u, events in users.items():
        live = live_evaluations(events, [0] * len(events), history)
        rows = rows_of(events, live)
        replays[u] = replay_user("default", u, rows[1:] if u == "e" else rows, history)
        lives[u] = live
    corrupted = dict(lives["b"][-1]["stats"], total_spent=12_345.0)
    records = [
        compare_user(profile_of(lives["a"][-1]), replays["a"]),
        compare_user(profile_of(lives["b"][-1], stats=corrupted, segments=["vip"]), replays["b"]),
        compare_user(profile_of(lives["c"][3]), replays["c"]),  # an older profile: compared at its seq
        compare_user(profile_of(lives["d"][-1]), None),  # no history
        compare_user(None, replays["d"]),  # history, no profile
        compare_user(profile_of(lives["e"][-1]), replays["e"]),  # head past retention: differs, reported apart
    ]
    assert [r["status"] for r in records] == ["equal", "differs", "equal", "missing", "extra", "differs"]
    report = summarize(records, 90)
    assert report["compared_users"] == 3 and report["equal_users"] == 2
    assert report["equal_pct"] == pytest.approx(200 / 3)
    assert report["missing_users"] == 1 and report["extra_users"] == 1
    assert report["past_retention"]["users"] == 1 and report["past_retention"]["differs"] == 1
    spent = report["stats"]["total_spent"]
    assert spent["mismatches"] == 1 and spent["mismatch_rate"] == pytest.approx(1 / 3)
    true_total = lives["b"][-1]["stats"]["total_spent"]
    assert spent["smape"] == pytest.approx(2 * abs(12_345.0 - true_total) / (12_345.0 + true_total) / 3)
    assert report["stats"]["events_total"]["mismatches"] == 0
    (diff,) = report["differing"]
    assert diff["user_id"] == "b" and diff["first_difference"]["field"] == "stats.total_spent"
    assert report["segments"]["users_with_membership_mismatch"] == 1
    assert report["segments"]["by_segment"]["vip"] == {"only_live": 1, "only_recomputed": 0}


@pytest.mark.parametrize("expression,op,clauses", [
    ("a > 1 && b < 2", "&&", ["a > 1", "b < 2"]),
    ("a > 1 || (b < 2 && c)", "||", ["a > 1", "(b < 2 && c)"]),
    ('x == "&&" && y', "&&", ['x == "&&"', "y"]),
    ("f(a && b)", "", ["f(a && b)"]),
    ("a ? b && c : d", "", ["a ? b && c : d"]),
])
def test_top_level_clauses(expression, op, clauses):
    assert top_level_clauses(expression) == (op, clauses)


def test_explain_names_the_stats_the_deciding_clause_and_the_entries():
    history = RuleHistory(catalogue(), initial_rules())
    events = shopper("u", 10, T0)
    rows = rows_of(events, live_evaluations(events, [0] * 10, history))
    replayed = replay_user("default", "u", rows, history, keep_events=True)
    # Events 0..2: identify, 2 page views; the first purchase (6000) is event 3, at seq 4.
    before = explain(replayed, history, "high_value_member", at=3)
    assert before["member"] is False and before["stats"]["avg_purchase"] is None
    assert before["decided_by"].startswith("'avg_purchase != null' is false")
    after = explain(replayed, history, "high_value_member")
    assert after["member"] is True and after["decided_by"] == "every clause is true"
    assert after["stats"] == {"is_member": True, "avg_purchase": 6000.0, "sessions": 10}
    assert after["timeline"] == [{"seq": 4, "ts": events[3].ts, "change": "entered"}]
    assert [c["value"] for c in after["clauses"]] == [True, True, True, True]
    visitor = explain(replayed, history, "new_visitor")
    assert visitor["timeline"] == [{"seq": 1, "ts": T0, "change": "entered"},
                                   {"seq": 2, "ts": events[1].ts, "change": "exited"}]
    assert explain(replayed, history, "big_purchase_now")["rule"] is None  # acme's rule, not this tenant's


def test_dry_run_counts_who_would_enter_and_exit():
    history = RuleHistory(catalogue(), initial_rules())
    profiles = []
    for i, amount in enumerate((100.0, 6000.0, 9000.0)):
        events = shopper(f"u{i}", 7, T0, amount=amount)
        replayed = replay_user("default", f"u{i}", rows_of(events, live_evaluations(events, [0] * 7, history)),
                               history)
        last_event = replayed.last_event
        assert replayed.last is not None and last_event is not None
        profiles.append(dict(replayed.last, last_event={"name": last_event.name, "values": last_event.values,
                                                        "ts": last_event.ts}))
    assert [("high_value_member" in p["segments"]) for p in profiles] == [False, True, True]
    changed = compile_rule({"id": "high_value_member", "description": "stricter",
                            "when": "avg_purchase != null && avg_purchase > 8000.0"}, catalogue())
    new = compile_rule({"id": "small_buyer", "description": "x", "when": "total_spent < 1000"}, catalogue())
    answer = dry_run([changed, new], catalogue(), profiles)
    assert answer["high_value_member"]["would_exit"] == 1 and answer["high_value_member"]["exit_examples"] == [
        "default/u1"]
    assert answer["high_value_member"]["would_enter"] == 0
    assert answer["small_buyer"]["would_enter"] == 1 and answer["small_buyer"]["enter_examples"] == ["default/u0"]
    # the reference agrees on who matches
    for p in profiles:
        matched, _ = reference.evaluate_rules({"small_buyer": new.rule.model_dump()}, p["stats"],
                                              replayed.last_event)
        assert ("small_buyer" in matched) == (p["user_id"] == "u0")
