"""Rules changed at run time, several tenants, hot users: every evaluation is checked.

Rule changes and events travel on different topics, so which events an operator evaluates before
or after a change is not fixed; each evaluation says which rule-set version it used
(`rules_version` = rule records applied), and the test recomputes it with that version."""

from __future__ import annotations

from collections import defaultdict

import msgspec
import pytest
import yaml

from operators.catalogue import load_catalogue
from operators.ownership import signing_keys
from segstream import reference
from segstream.kafka_admin import read_topic
from segstream.produce import TrafficSpec, generate, produce_records, signed_rule
from segstream.testing import input_events, run_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# (key, rule or None for a delete, valid?)
CHANGES = [
    ("buyer", {"id": "buyer", "description": "bought at least twice", "when": "purchases >= 2"}, True),
    ("new_visitor", {"id": "new_visitor", "description": "changed: first two sessions",
                     "when": "sessions <= 2"}, True),
    ("lapsed_buyer", None, True),
    ("t1_cart", {"id": "t1_cart", "tenant": "tenant-1", "description": "tenant-1 only",
                 "when": "cart_adds_24h >= 1"}, True),
    ("bad_cel", {"id": "bad_cel", "description": "does not compile", "when": "purchases >="}, False),
    ("bad_stat", {"id": "bad_stat", "description": "unknown stat", "when": "no_such_stat > 1"}, False),
    ("buyer", None, True),
    ("on_purchase", {"id": "on_purchase", "description": "the current event is a purchase",
                     "when": 'event.name == "purchase"'}, True),
]


def rule_sets(initial: dict[str, dict]) -> list[dict[str, dict]]:
    """The rule set after each number of applied rule records (index = rules_version)."""
    versions = [dict(initial)]
    for key, rule, valid in CHANGES:
        current = dict(versions[-1])
        if valid:
            if rule is None:
                current.pop(key, None)
            else:
                current[key] = rule
        versions.append(current)
    return versions


def test_every_evaluation_matches_recomputation_with_its_rule_version(job_config, tmp_path):
    settings, config_path = job_config
    topics = settings.kafka.topics
    bootstrap = settings.kafka.bootstrap_servers
    traffic = list(generate(TrafficSpec(events=3_000, users=300, seed=5, tenants=3, invalid_ratio=0.005)))
    keys = signing_keys(settings.ownership)  # rule records are signed (docs/security.md)
    rule_records = [signed_rule(keys, key, msgspec.json.encode(rule) if rule else None) for key, rule, _ in CHANGES]
    produce_records(bootstrap, topics.events, traffic[:1_000], progress=False)
    produce_records(bootstrap, topics.rules, rule_records[:6], progress=False)
    produce_records(bootstrap, topics.events, traffic[1_000:2_000], progress=False)
    produce_records(bootstrap, topics.rules, rule_records[6:], progress=False)
    produce_records(bootstrap, topics.events, traffic[2_000:], progress=False)

    run_job(config_path)

    catalogue = load_catalogue(settings.path(settings.stats_file))
    initial = {r["id"]: r for r in yaml.safe_load(settings.path(settings.rules_file).read_text())["rules"]}
    versions = rule_sets(initial)

    per_user, _ = input_events(settings)

    evaluations = defaultdict(list)
    for m in read_topic(bootstrap, topics.evaluations):
        d = msgspec.json.decode(m.value)
        evaluations[(d["tenant"], d["user_id"])].append(d)
    assert set(evaluations) == set(per_user)

    seen_versions = set()
    for user, events in per_user.items():
        evals = sorted(evaluations[user], key=lambda d: d["seq"])
        assert [d["seq"] for d in evals] == list(range(1, len(events) + 1)), user
        previous: list[str] = []
        for d, event in zip(evals, events, strict=True):
            prefix = events[:d["seq"]]
            assert d["event_id"] == event.event_id
            stats = reference.stat_values(catalogue.stats, prefix)
            assert d["stats"] == stats, (user, d["seq"])
            seen_versions.add(d["rules_version"])
            expected, _ = reference.evaluate_rules(versions[d["rules_version"]], stats, event)
            assert d["segments"] == expected, (user, d["seq"], d["rules_version"])
            assert d["entered"] == sorted(set(expected) - set(previous))
            assert d["exited"] == sorted(set(previous) - set(expected))
            previous = expected

    tenant_one_rule = {"t1_cart"}
    for user, evals in evaluations.items():
        if user[0] != "tenant-1":
            assert not any(tenant_one_rule & set(d["segments"]) for d in evals), user
    assert max(seen_versions) == len(CHANGES), "the last rule change never reached the evaluator"

    dead = [msgspec.json.decode(m.value) for m in read_topic(bootstrap, topics.dead_letters)]
    rule_dead = sorted(d["offset"] for d in dead if d["topic"] == topics.rules)
    assert rule_dead == [i for i, (_, _, valid) in enumerate(CHANGES) if not valid]
    assert all(d["reason"].startswith("rule: ") for d in dead if d["topic"] == topics.rules)

    # The batch layer over what this job wrote (docs/batch.md): the rule log holds every rule record
    # with the version the evaluations name, and a recompute of every user from the Bigtable history,
    # each event under the rule set of its rules_version, equals the live profiles: 100 % equal.
    # Then a corrupted profile shows up in the report.
    check_batch_layer(settings, initial, len(per_user), tmp_path)


def check_batch_layer(settings, initial: dict[str, dict], users: int, tmp_path) -> None:
    import json

    from google.cloud.bigtable.data import BigtableDataClient

    from batch import pipeline
    from batch.compare import summarize
    from batch.rulelog import read_rule_log
    from sinks.bigtable import mutations, point_at_instance
    from sinks.bigtable.reader import read_profile

    log = read_rule_log(settings.kafka.bootstrap_servers, settings.kafka.topics.rules_log)
    changes = {e["version"]: e for e in log if "rule_id" in e}
    assert sorted(changes) == list(range(1, len(CHANGES) + 1))
    for version, (key, rule, valid) in enumerate(CHANGES, start=1):
        entry = changes[version]
        assert (entry["rule_id"], entry["accepted"]) == (key, valid)
        assert (json.loads(entry["value"]) if entry["value"] else None) == rule
    initial_entries = [e for e in log if "initial" in e]
    assert initial_entries and {r["id"]: r for r in json.loads(initial_entries[0]["initial"])} == initial

    rules = pipeline.Rules(yaml.safe_load(settings.path(settings.stats_file).read_text()), list(initial.values()), log)
    result = pipeline.run(settings.bigtable, settings.batch, rules, pipeline.Selection(), tmp_path / "all",
                          report=True, workers=2, progress=False)
    report = summarize(result.lines("compare"), settings.bigtable.retention_days)
    assert report["equal_pct"] == 100.0 and report["compared_users"] == users, report
    assert report["missing_users"] == report["extra_users"] == report["past_retention"]["users"] == 0

    # Corrupt one live profile (same seq, so the cells are replaced) and recompute that user alone.
    victim = next((p["tenant"], p["user_id"]) for p in result.lines("profiles") if p["segments"])
    live = read_profile(settings.bigtable, *victim)
    assert live is not None
    bad = dict(live, segments=[], rules_version=live.get("rules_version", 0),
               stats=dict(live["stats"], events_total=live["stats"]["events_total"] + 1))
    b = settings.bigtable
    point_at_instance(b)
    client = BigtableDataClient(project=b.project)
    try:
        client.get_table(b.instance, b.profiles_table).bulk_mutate_rows(
            [mutations.profile_entry(msgspec.json.encode(bad), b.hash_prefix_hex)])
    finally:
        client.close()
    result = pipeline.run(b, settings.batch, rules, pipeline.Selection(users=[victim]), tmp_path / "one",
                          report=True, workers=1, progress=False)
    report = summarize(result.lines("compare"), b.retention_days)
    assert report["equal_pct"] == 0.0 and report["compared_users"] == 1
    (diff,) = report["differing"]
    assert diff["first_difference"]["field"] == "stats.events_total" and diff["differences"] == 2
    assert report["segments"]["users_with_membership_mismatch"] == 1
