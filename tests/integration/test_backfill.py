"""Backfill when definitions change (docs/batch.md), the way an operator does it:

  catalogue v1 on part 1 of the traffic (Bigtable mirror on) ── stop with a savepoint
  `segstream backfill` with catalogue v2 (a stat added, a session gap and a window changed)
  v2 from the new savepoint on part 2 ── stop with a savepoint

Checked: every evaluation after the restart has the stats and segments of the Python engine
(operators/) run under v2 over the user's whole history (part 1 + part 2); the evaluations before
it those of v1; per user the seqs run 1..n across the cut-over, every valid event evaluated once
(no gap, no double count); entries and exits follow the segments last announced.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import msgspec
import pytest
import yaml

from operators.catalogue import load_catalogue
from operators.evaluator import Evaluator
from operators.ownership import signing_keys
from operators.rules import load_rules
from segstream.config import PROJECT_ROOT
from segstream.kafka_admin import read_topic
from segstream.produce import TrafficSpec, generate, produce_records, signed_rule
from segstream.testing import FAST_JVM, TopicWatcher, input_events, write_config
from tests.integration.test_upgrade import produce_part, run_until_evaluated

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ADDED = {"name": "devices_seen", "agg": "distinct", "event": "page_view", "field": "device"}
GAP = ("sessions", "10m")  # from 30m: the rule new_visitor reads it
WINDOW = ("page_views_1h", "2h")  # from 1h
# Published before part 1: the restarted job must still apply it (the rule broadcast state crossed).
RULE = {"id": "regular", "description": "five events or more", "when": "events_total >= 5"}


def write_v2(tmp_path: Path) -> Path:
    stats = yaml.safe_load((PROJECT_ROOT / "conf" / "stats.yaml").read_text())
    for spec in stats["stats"]:
        if spec["name"] == GAP[0]:
            spec["gap"] = GAP[1]
        if spec["name"] == WINDOW[0]:
            spec["window"] = WINDOW[1]
    stats["stats"].append(ADDED)
    path = tmp_path / "stats-v2.yaml"
    path.write_text(yaml.safe_dump(stats, sort_keys=False))
    return path


def test_backfill_after_a_catalogue_change(job_config, tmp_path):
    settings, config_path = job_config
    data = yaml.safe_load(config_path.read_text())
    data["flink"].update({"checkpoint_interval_ms": 1000})
    settings = write_config(config_path, data)
    assert settings.bigtable.enabled
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    stats_v2 = write_v2(tmp_path)

    traffic = list(generate(TrafficSpec(events=2_400, users=200, seed=33, invalid_ratio=0.005, tenants=2)))
    parts = [traffic[:1_400], traffic[1_400:]]
    envs = [{"SEGSTREAM_FLINK__PARALLELISM": "1", "JVM_ARGS": FAST_JVM},
            {"SEGSTREAM_FLINK__PARALLELISM": "2", "SEGSTREAM_STATS_FILE": str(stats_v2), "JVM_ARGS": FAST_JVM}]
    produce_records(bootstrap, topics.rules, [signed_rule(signing_keys(settings.ownership), "regular",
                                                         json.dumps(RULE).encode())], progress=False)
    part_of: dict[str, int] = {}
    watcher = TopicWatcher(bootstrap, topics.evaluations)
    try:
        savepoint = None
        for index, (part, env) in enumerate(zip(parts, envs, strict=True)):
            produce_part(bootstrap, topics.events, part, index, part_of)
            savepoint = run_until_evaluated(config_path, tmp_path, f"part{index + 1}", watcher, set(part_of), env,
                                            savepoint)
            if index == 0:
                old = savepoint
                savepoint = backfill(config_path, savepoint, stats_v2, tmp_path / "backfilled",
                                     users=len(input_events(settings)[0]))
                # The new savepoint holds copies of the other operators' state files: the old one can go.
                shutil.rmtree(urlparse(old).path)
    finally:
        watcher.close()

    check_against_the_reference(settings, part_of, stats_v2)


def backfill(config_path: Path, savepoint: str, stats: Path, out: Path, users: int) -> str:
    env = {**os.environ, "SEGSTREAM_CONFIG": str(config_path), "JVM_ARGS": FAST_JVM}
    done = subprocess.run([sys.executable, "-m", "segstream.cli", "backfill", "--savepoint", savepoint,
                           "--stats", str(stats), "--out", str(out)],
                          env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    # Every user the job had seen, each with their whole history in Bigtable.
    assert summary["users"] == users, summary
    assert summary["outcomes"]["rebuilt"] == users, summary
    assert f"backfilled {users:,} users" in done.stderr, done.stderr
    return str(out)


def check_against_the_reference(settings, part_of: dict[str, int], stats_v2: Path) -> None:
    per_user, _ = input_events(settings)
    catalogues = [load_catalogue(PROJECT_ROOT / "conf" / "stats.yaml"), load_catalogue(stats_v2)]
    rules_file = PROJECT_ROOT / "conf" / "rules.yaml"
    evaluators = {}  # (part, rules_version) -> the Python engine
    for part, catalogue in enumerate(catalogues):
        for version in (0, 1):
            rules = load_rules(rules_file, catalogue)
            if version:
                assert rules.apply_change(RULE["id"], json.dumps(RULE).encode()) is None
            evaluators[part, version] = Evaluator(catalogue, rules)

    by_id: dict[str, dict] = {}
    for m in read_topic(settings.kafka.bootstrap_servers, settings.kafka.topics.evaluations):
        d = msgspec.json.decode(m.value)
        assert by_id.setdefault(d["event_id"], d) == d, f"{d['event_id']} evaluated twice, differently"
    assert set(by_id) == set(part_of), "an event is missing from evaluations"

    straddling = changed_users = segment_changes = regulars = 0
    for user, events in per_user.items():
        evals = sorted((by_id[e.event_id] for e in events), key=lambda d: d["seq"])
        assert [d["seq"] for d in evals] == list(range(1, len(events) + 1)), f"{user}: seqs broken at the cut"
        assert [d["event_id"] for d in evals] == [e.event_id for e in events], user
        # The Python engine over the whole history under each catalogue, each event under the rules
        # of its rules_version: part 1 must equal v1's, part 2 v2's (as if v2 had always been live).
        reference: list[list[dict]] = [[], []]
        v1_blobs: list[bytes] = []
        blobs: list[bytes | None] = [None, None]
        for d, event in zip(evals, events, strict=True):
            for part in (0, 1):
                p = evaluators[part, d["rules_version"]].process(blobs[part], event)
                blobs[part] = p.blob
                reference[part].append(p.evaluation)
            v1_blobs.append(blobs[0])  # type: ignore[arg-type]
        previous: list[str] = []
        for i, (d, event) in enumerate(zip(evals, events, strict=True)):
            want = reference[part_of[event.event_id]][i]
            if part_of[event.event_id] == 1:
                assert d["rules_version"] == 1, f"{user}: the rule change was lost at the restart"
                regulars += RULE["id"] in d["segments"]
            assert d["stats"] == want["stats"], (user, d["seq"], d["stats"], want["stats"])
            assert d["segments"] == want["segments"], (user, d["seq"])
            assert d["entered"] == sorted(set(d["segments"]) - set(previous)), (user, d["seq"])
            assert d["exited"] == sorted(set(previous) - set(d["segments"])), (user, d["seq"])
            previous = d["segments"]
        cut = [i for i, e in enumerate(events) if part_of[e.event_id] == 1]
        if cut and cut[0] > 0:
            straddling += 1
            first = cut[0]
            # Without the backfill (the engine's migration only: the v1 state, the changed and added
            # stats restarting at this event), this evaluation would differ.
            migrated = evaluators[1, 1].process(v1_blobs[first - 1], events[first]).evaluation
            changed_users += migrated["stats"] != evals[first]["stats"]
            segment_changes += migrated["segments"] != evals[first]["segments"]
    # Users with events on both sides of the cut: for (nearly) all of them the backfill mattered.
    assert straddling >= 30 and changed_users >= 0.9 * straddling, (straddling, changed_users)
    assert regulars > 0
    assert segment_changes > 0, "the backfill never changed a segment: the segment check proves little"
