"""The job (its per-event path on the JVM engine) end to end on the real broker and the MiniCluster
agrees with the reference: one evaluation per valid event, every invalid record (events and rules)
dead-lettered with its reason, and each evaluation equal to the Python engine's (segstream/replay.py)
over the same events in each user's order, apart from rules_version; and with Bigtable on, the
tables hold exactly the rows the Python reference (sinks/bigtable/mutations.py) makes of the same
events and evaluations."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest
import yaml

from operators.events import InvalidEvent, encode_event, parse_record
from operators.ownership import DEV_KEY
from segstream.kafka_admin import read_topic, value_of
from segstream.produce import TrafficSpec, generate, produce_records, signed_rule
from segstream.replay import python_replay
from segstream.testing import assert_evaluations_are_python, check_results, events_by_user, run_job, write_config
from sinks.bigtable import mutations, point_at_instance

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

EVENTS, USERS = 8_000, 800
# A rule over a stat the catalogue does not have: refused, dead-lettered, the rule set unchanged,
# so the evaluations do not depend on where it falls among the events.
# Signed with the dev key (the tests' configuration): refused for what it says, not who wrote it.
BAD_RULE = signed_rule([DEV_KEY], "bad_rule", json.dumps({"id": "bad_rule", "when": "no_such_stat > 1"}).encode())


def test_jvm_job_evaluates_like_the_python_engine(job_config, tmp_path):
    base, base_path = job_config
    data = yaml.safe_load(base_path.read_text())
    data.setdefault("bigtable", {})["enabled"] = False
    settings = write_config(tmp_path / "jvm.yaml", data)
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    produce_records(bootstrap, topics.events,
                    generate(TrafficSpec(events=EVENTS, users=USERS, seed=23, invalid_ratio=0.01, tenants=2)),
                    progress=False)
    produce_records(bootstrap, topics.rules, [BAD_RULE], progress=False)

    run_job(tmp_path / "jvm.yaml")

    inputs = read_topic(bootstrap, topics.events)
    per_user, invalid = events_by_user(inputs)
    assert len(inputs) == EVENTS and len(per_user) >= 300 and invalid

    # Exactly one evaluation per valid event, keyed by user id, each equal to the Python engine's over
    # the user's events in partition order.
    evaluations = read_topic(bootstrap, topics.evaluations)
    decoded = [msgspec.json.decode(value_of(m)) for m in evaluations]
    assert_evaluations_are_python(settings, inputs, decoded)
    for m, d in zip(evaluations, decoded, strict=True):
        assert m.key == d["user_id"].encode()
    # The one rule record (refused) counts wherever it fell among the events.
    assert {d["rules_version"] for d in decoded} <= {0, 1}
    assert read_topic(bootstrap, topics.expirations) == []  # 90d expiry, three days of traffic

    # Every invalid record dead-lettered once, with the reason the Python contract gives, and nothing
    # else; the refused rule too.
    dead = [msgspec.json.decode(value_of(m)) for m in read_topic(bootstrap, topics.dead_letters)]
    event_dead = [d for d in dead if d["topic"] == topics.events]
    assert sorted((d["partition"], d["offset"]) for d in event_dead) == sorted(
        (m.partition, m.offset) for m in invalid)
    originals = {(m.partition, m.offset): value_of(m) for m in invalid}
    for d in event_dead:
        original = originals[(d["partition"], d["offset"])]
        assert base64.b64decode(d["original_b64"]) == original
        with pytest.raises(InvalidEvent) as refused:
            parse_record(original)
        assert d["reason"] == str(refused.value)
    rule_dead = [d for d in dead if d["topic"] == topics.rules]
    assert len(rule_dead) == 1 and len(dead) == len(event_dead) + 1
    catalogue = yaml.safe_load(settings.path(settings.stats_file).read_text())
    rules = yaml.safe_load(settings.path(settings.rules_file).read_text())["rules"]
    expected_rule = python_replay([json.dumps({"catalogue": catalogue}), json.dumps({"rules": rules}), json.dumps(
        {"rule_change": {"key": BAD_RULE.key.decode(), "value": BAD_RULE.value.decode()}})])
    assert [json.loads(line) for line in expected_rule] == [{"dead_letter": rule_dead[0]["reason"]}]
    assert base64.b64decode(rule_dead[0]["original_b64"]) == BAD_RULE.value


def latest_cells(b, table_id: str) -> dict[bytes, list[tuple]]:
    """{row key: [(family, qualifier, timestamp, value)]}, the newest version of each column."""
    from google.cloud.bigtable.data import BigtableDataClient, ReadRowsQuery
    from google.cloud.bigtable.data import row_filters as rf

    point_at_instance(b)
    client = BigtableDataClient(project=b.project)
    try:
        table = client.get_table(b.instance, table_id)
        query = ReadRowsQuery(row_filter=rf.CellsColumnLimitFilter(1))
        return {row.row_key: sorted((c.family, c.qualifier, c.timestamp_micros, c.value) for c in row.cells)
                for row in table.read_rows(query)}
    finally:
        client.close()


def expected_cells(entries) -> dict[bytes, list[tuple]]:
    return {e.row_key: sorted((c.family, c.qualifier, c.timestamp_micros, c.new_value) for c in e.mutations)
            for e in entries}


def test_the_job_mirrors_to_bigtable_as_the_reference_rows(job_config):
    settings, config_path = job_config
    assert settings.bigtable.enabled
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    produce_records(bootstrap, topics.events,
                    generate(TrafficSpec(events=4_000, users=400, seed=29, invalid_ratio=0.01, tenants=2)),
                    progress=False)
    run_job(config_path)

    # The end-to-end check: evaluations, dead letters, exactly the valid events
    # in the events table, profiles = last evaluations.
    check_results(settings)

    # Cell for cell what sinks/bigtable/mutations.py makes of the same events and evaluations: the
    # payload is the event as the Python engine encodes it, the profile the last evaluation's raw values.
    b, width = settings.bigtable, settings.bigtable.hash_prefix_hex
    per_user, _ = events_by_user(read_topic(bootstrap, topics.events))
    events = [e for user_events in per_user.values() for e in user_events]
    last: dict[tuple[str, str], tuple[int, bytes]] = {}
    evaluated: dict[tuple[str, str], bytes] = {}  # (tenant, event_id) -> its evaluation
    for m in read_topic(bootstrap, topics.evaluations):
        d = msgspec.json.decode(value_of(m))
        user = (d["tenant"], d["user_id"])
        evaluated[(d["tenant"], d["event_id"])] = value_of(m)
        if user not in last or d["seq"] > last[user][0]:
            last[user] = (d["seq"], value_of(m))
    assert latest_cells(b, b.events_table) == expected_cells(
        mutations.entries(encode_event(e), evaluated[(e.tenant, e.event_id)], width)[0] for e in events)
    assert len(last) == len(per_user)
    assert latest_cells(b, b.profiles_table) == expected_cells(
        mutations.profile_entry(raw, width) for _, raw in last.values())
