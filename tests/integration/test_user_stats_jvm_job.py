"""jobs/user_stats_jvm.py (the per-event path on the JVM engine) end to end on the real broker and
the MiniCluster: one evaluation per valid event, every invalid record (events and rules)
dead-lettered with its reason, and each evaluation equal to the Python engine's (segstream/replay.py)
over the same events in each user's order, apart from rules_version; and with Bigtable on, the
tables hold exactly the rows the Python sink writes for the same events and evaluations."""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict

import msgspec
import pytest
import yaml

from operators.events import InvalidEvent, encode_event, parse_record
from segstream.job_process import JVM_JOB_SCRIPT
from segstream.kafka_admin import read_topic, value_of
from segstream.produce import Record, TrafficSpec, generate, produce_records
from segstream.replay import python_replay
from segstream.testing import (
    check_results,
    crash_and_recover,
    crash_config,
    events_by_user,
    produce_traffic,
    run_job,
    valid_event_ids,
    write_config,
)
from sinks.bigtable import mutations, point_at_instance

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

EVENTS, USERS = 8_000, 800
# A rule over a stat the catalogue does not have: refused, dead-lettered, the rule set unchanged,
# so the evaluations do not depend on where it falls among the events.
BAD_RULE = Record(b"bad_rule", json.dumps({"id": "bad_rule", "when": "no_such_stat > 1"}).encode(), None)


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

    run_job(tmp_path / "jvm.yaml", script=JVM_JOB_SCRIPT)

    inputs = read_topic(bootstrap, topics.events)
    per_user, invalid = events_by_user(inputs)
    assert len(inputs) == EVENTS and len(per_user) >= 300 and invalid

    # Exactly one evaluation per valid event, keyed by user id.
    evaluations = read_topic(bootstrap, topics.evaluations)
    decoded = [msgspec.json.decode(value_of(m)) for m in evaluations]
    counts = Counter(d["event_id"] for d in decoded)
    assert set(counts) == {e.event_id for events in per_user.values() for e in events}
    assert max(counts.values()) == 1, "an event was evaluated twice"
    for m, d in zip(evaluations, decoded, strict=True):
        assert m.key == d["user_id"].encode()
    # The one rule record (refused) counts wherever it fell among the events.
    assert {d["rules_version"] for d in decoded} <= {0, 1}
    assert read_topic(bootstrap, topics.expirations) == []  # 90d expiry, three days of traffic

    # Each evaluation equals the Python engine's over the user's events in partition order.
    catalogue = yaml.safe_load(settings.path(settings.stats_file).read_text())
    rules = yaml.safe_load(settings.path(settings.rules_file).read_text())["rules"]
    script = [json.dumps({"catalogue": catalogue}), json.dumps({"rules": rules})]
    raw_per_user: dict[tuple[str, str], list[tuple[str, bytes]]] = defaultdict(list)
    for m in inputs:  # partition then offset order: each user's order in the job
        try:
            event = parse_record(value_of(m))
        except InvalidEvent:
            continue
        raw_per_user[(event.tenant, event.user_id)].append((event.event_id, value_of(m)))
    order = []
    for user_events in raw_per_user.values():
        for event_id, raw in user_events:
            script.append(json.dumps({"event_b64": base64.b64encode(raw).decode()}))
            order.append(event_id)
    by_id = {d["event_id"]: {k: v for k, v in d.items() if k != "rules_version"} for d in decoded}
    expected = [json.loads(line) for line in python_replay(script)]
    assert all("evaluation" in x for x in expected), "the Python engine expired or refused an event"
    assert len(expected) == len(order)
    for event_id, x in zip(order, expected, strict=True):
        assert by_id[event_id] == x["evaluation"], event_id

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
    expected_rule = python_replay([script[0], script[1], json.dumps(
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


def test_jvm_job_mirrors_to_bigtable_like_the_python_sink(job_config):
    settings, config_path = job_config
    assert settings.bigtable.enabled
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    produce_records(bootstrap, topics.events,
                    generate(TrafficSpec(events=4_000, users=400, seed=29, invalid_ratio=0.01, tenants=2)),
                    progress=False)
    run_job(config_path, script=JVM_JOB_SCRIPT)

    # The Python job's own end-to-end check: evaluations, dead letters, exactly the valid events
    # in the events table, profiles = last evaluations.
    check_results(settings)

    # Cell for cell what sinks/bigtable/mutations.py makes of the same events and evaluations: the
    # payload is the event as the Python job encodes it, the profile the last evaluation's raw values.
    b, width = settings.bigtable, settings.bigtable.hash_prefix_hex
    per_user, _ = events_by_user(read_topic(bootstrap, topics.events))
    events = [e for user_events in per_user.values() for e in user_events]
    assert latest_cells(b, b.events_table) == expected_cells(
        mutations.event_entry(e, encode_event(e), width) for e in events)
    last: dict[tuple[str, str], tuple[int, bytes]] = {}
    for m in read_topic(bootstrap, topics.evaluations):
        d = msgspec.json.decode(value_of(m))
        user = (d["tenant"], d["user_id"])
        if user not in last or d["seq"] > last[user][0]:
            last[user] = (d["seq"], value_of(m))
    assert len(last) == len(per_user)
    assert latest_cells(b, b.profiles_table) == expected_cells(
        mutations.profile_entry(raw, width) for _, raw in last.values())


@pytest.mark.timeout(600)
def test_jvm_job_kill_9_and_restore_leaves_exactly_the_valid_events_in_bigtable(job_config, tmp_path):
    """kill -9 mid-stream after a completed checkpoint, restore it: the Bigtable sink's flush before
    each barrier means nothing acknowledged by a checkpoint is lost, and replayed rows land on the
    same cells (check_results: exactly the valid events in the events table)."""
    seed = 3
    settings, config_path = crash_config(job_config[1], tmp_path / "crash.yaml")
    assert settings.bigtable.enabled
    produce_traffic(settings, seed)
    run = crash_and_recover(settings, config_path, tmp_path, seed, valid_event_ids(settings), script=JVM_JOB_SCRIPT)
    print(f"\n{run}")
    assert run.mid_stream, f"the kill did not fall mid-stream: {run}"
    print(check_results(settings))
