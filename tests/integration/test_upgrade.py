"""An upgrade and a rescale through a savepoint, the way production does them (docs/recovery.md):

  v1 (parallelism 1) on part 1 of the traffic ── stop with a savepoint (REST, = `flink stop`)
  v2 (parallelism 2; one stat added, one rule changed) from it on part 2 ── stop with a savepoint
  v2 rescaled to parallelism 1 from that on part 3 ── stop with a savepoint

Each run is unbounded and is stopped once every event produced so far has been evaluated. (A
bounded run cannot be the base of an upgrade: it takes a final checkpoint when it finishes but
discards it with the finished job, and its Kafka splits would carry its end offsets into the next
version, which would then read nothing new.)

Checked at the end: the stats v1 already had continue across both restores (equal to a
recomputation over all events); the added stat counts only events after the upgrade; evaluations
after the upgrade use the changed rule; per user the seqs run 1..n without a gap or a repeat across
the two runs; dead letters and the Bigtable event log hold exactly the invalid/valid input.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import yaml

from operators.catalogue import load_catalogue
from operators.events import InvalidEvent, parse_record
from segstream import reference
from segstream.config import PROJECT_ROOT
from segstream.job_process import JobProcess
from segstream.kafka_admin import read_topic
from segstream.produce import TrafficSpec, generate, produce_records
from segstream.testing import (
    FAST_JVM,
    TopicWatcher,
    assert_dead_letters_are,
    assert_event_log_is,
    input_events,
    stop_with_savepoint,
    wait_for,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

NEW_STAT = {"name": "devices_seen", "agg": "distinct", "event": "page_view", "field": "device"}
CHANGED_RULE = "new_visitor"
CHANGED_WHEN = "sessions <= 2 && purchases == 0"


def write_v2_conf(tmp_path: Path) -> tuple[Path, Path]:
    """conf/stats.yaml plus NEW_STAT, and conf/rules.yaml with CHANGED_RULE's condition changed."""
    stats = yaml.safe_load((PROJECT_ROOT / "conf" / "stats.yaml").read_text())
    stats["stats"].append(NEW_STAT)
    rules = yaml.safe_load((PROJECT_ROOT / "conf" / "rules.yaml").read_text())
    changed = [r for r in rules["rules"] if r["id"] == CHANGED_RULE]
    assert changed and changed[0]["when"] != CHANGED_WHEN
    changed[0]["when"] = CHANGED_WHEN
    stats_file, rules_file = tmp_path / "stats-v2.yaml", tmp_path / "rules-v2.yaml"
    stats_file.write_text(yaml.safe_dump(stats, sort_keys=False))
    rules_file.write_text(yaml.safe_dump(rules, sort_keys=False))
    return stats_file, rules_file


def produce_part(bootstrap: str, topic: str, part: list, index: int, part_of: dict[str, int]) -> None:
    """Produce one part of the traffic; note the part of each valid event id in `part_of`."""
    produce_records(bootstrap, topic, part, progress=False)
    for record in part:
        try:
            part_of[parse_record(record.value).event_id] = index
        except InvalidEvent:
            pass


def run_until_evaluated(config_path: Path, workdir: Path, name: str, watcher: TopicWatcher, wanted: set[str],
                        env: dict[str, str], savepoint: str | None = None, timeout: float = 300) -> str:
    """Start the job (unbounded), wait until every id in `wanted` is evaluated, stop it with a
    savepoint; returns the savepoint's location."""
    args = ["--savepoint", savepoint] if savepoint else []
    job = JobProcess.start(config_path, args, workdir / f"{name}.log", env=env,
                           flink_log_dir=workdir / f"flink-log-{name}")
    try:
        wait_for(lambda: wanted <= watcher.event_ids, timeout, f"{name}: {len(wanted)} evaluations", 0.1,
                 abort=job.exit_reason)
        return stop_with_savepoint(job, None, workdir / "savepoints")
    finally:
        if job.running():
            job.kill()


def test_upgrade_and_rescale_through_savepoints(job_config, tmp_path):
    settings, config_path = job_config
    data = yaml.safe_load(config_path.read_text())
    data["flink"].update({"checkpoint_interval_ms": 1000})
    settings = write_config(config_path, data)
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    stats_v2, rules_v2 = write_v2_conf(tmp_path)

    traffic = list(generate(TrafficSpec(events=6_000, users=300, seed=21, invalid_ratio=0.005, tenants=2)))
    parts = [traffic[:2_500], traffic[2_500:4_500], traffic[4_500:]]
    versions = [  # (name, environment)
        ("v1-p1", {"SEGSTREAM_FLINK__PARALLELISM": "1", "JVM_ARGS": FAST_JVM}),
        ("v2-p2", {"SEGSTREAM_FLINK__PARALLELISM": "2", "SEGSTREAM_STATS_FILE": str(stats_v2),
                   "SEGSTREAM_RULES_FILE": str(rules_v2), "JVM_ARGS": FAST_JVM}),
        ("v2-p1", {"SEGSTREAM_FLINK__PARALLELISM": "1", "SEGSTREAM_STATS_FILE": str(stats_v2),
                   "SEGSTREAM_RULES_FILE": str(rules_v2), "JVM_ARGS": FAST_JVM}),
    ]

    part_of: dict[str, int] = {}  # valid event id -> part index
    watcher = TopicWatcher(bootstrap, topics.evaluations)
    savepoint = None
    try:
        for index, (part, (name, env)) in enumerate(zip(parts, versions, strict=True)):
            produce_part(bootstrap, topics.events, part, index, part_of)
            savepoint = run_until_evaluated(config_path, tmp_path, name, watcher, set(part_of), env, savepoint)
    finally:
        watcher.close()

    check_upgrade(settings, part_of, stats_v2, rules_v2)


def check_upgrade(settings, part_of: dict[str, int], stats_v2: Path, rules_v2: Path) -> None:
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    per_user, invalid = input_events(settings)
    v1_catalogue = load_catalogue(PROJECT_ROOT / "conf" / "stats.yaml")
    v2_catalogue = load_catalogue(stats_v2)
    new_spec = next(s for s in v2_catalogue.stats if s.name == NEW_STAT["name"])
    v1_rules = {r["id"]: r for r in yaml.safe_load((PROJECT_ROOT / "conf" / "rules.yaml").read_text())["rules"]}
    v2_rules = {r["id"]: r for r in yaml.safe_load(rules_v2.read_text())["rules"]}

    # Duplicates are allowed (stop-with-savepoint does not replay, but at-least-once permits it);
    # they must be identical.
    by_id: dict[str, dict] = {}
    for m in read_topic(bootstrap, topics.evaluations):
        d = msgspec.json.decode(m.value)
        assert by_id.setdefault(d["event_id"], d) == d, d["event_id"]
    assert set(by_id) == set(part_of)

    upgraded_users = changed_rule_users = 0
    for user, events in per_user.items():
        evals = sorted((by_id[e.event_id] for e in events), key=lambda d: d["seq"])
        assert [d["seq"] for d in evals] == list(range(1, len(events) + 1)), f"{user}: seqs broken by a restore"
        assert [d["event_id"] for d in evals] == [e.event_id for e in events], user
        previous: list[str] = []
        for d, event in zip(evals, events, strict=True):
            after_upgrade = part_of[event.event_id] > 0
            assert (NEW_STAT["name"] in d["stats"]) == after_upgrade, (user, d["seq"])
            assert d["entered"] == sorted(set(d["segments"]) - set(previous)), (user, d["seq"])
            assert d["exited"] == sorted(set(previous) - set(d["segments"])), (user, d["seq"])
            previous = d["segments"]

        last, last_event = evals[-1], events[-1]
        old_stats = reference.stat_values(v1_catalogue.stats, events)
        assert {k: last["stats"][k] for k in old_stats} == old_stats, f"{user}: old stats did not continue"
        if part_of[last_event.event_id] == 0:  # no event after the upgrade: still v1's evaluation
            assert last["segments"] == reference.evaluate_rules(v1_rules, old_stats, last_event)[0], user
            continue
        upgraded_users += 1
        since_upgrade = [e for e in events if part_of[e.event_id] > 0]
        assert last["stats"][NEW_STAT["name"]] == reference.stat_value(new_spec, since_upgrade), (
            f"{user}: the new stat must count only events after the upgrade")
        stats = dict(old_stats, **{NEW_STAT["name"]: last["stats"][NEW_STAT["name"]]})
        assert last["segments"] == reference.evaluate_rules(v2_rules, stats, last_event)[0], user
        if ((CHANGED_RULE in last["segments"])
                != (CHANGED_RULE in reference.evaluate_rules(v1_rules, old_stats, last_event)[0])):
            changed_rule_users += 1
    assert upgraded_users > 50, upgraded_users
    assert changed_rule_users > 0, "the changed rule never made a difference: the test proves nothing"

    assert_dead_letters_are(settings, invalid)
    assert_event_log_is(settings, per_user)
