"""The job end to end on the real broker and the MiniCluster: one evaluation per valid event,
every invalid record dead-lettered with its reason, stats and segments equal to a recomputation."""

from __future__ import annotations

import base64
from collections import Counter

import msgspec
import pytest

from operators.catalogue import load_catalogue
from segstream import reference
from segstream.kafka_admin import read_topic
from segstream.produce import TrafficSpec, generate, produce_records
from segstream.testing import assert_event_log_is, events_by_user, last_evaluations, run_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_one_evaluation_per_valid_event_and_dead_letters(job_config):
    settings, config_path = job_config
    topics = settings.kafka.topics
    produce_records(settings.kafka.bootstrap_servers, topics.events,
                    generate(TrafficSpec(events=12_000, users=1_500, seed=11, invalid_ratio=0.01, tenants=2)),
                    progress=False)

    run_job(config_path)

    inputs = read_topic(settings.kafka.bootstrap_servers, topics.events)
    per_user, invalid = events_by_user(inputs)
    valid_ids = {e.event_id for events in per_user.values() for e in events}
    assert len(inputs) == 12_000 and len(per_user) >= 500 and invalid

    evaluations = read_topic(settings.kafka.bootstrap_servers, topics.evaluations)
    decoded = [msgspec.json.decode(m.value) for m in evaluations]
    counts = Counter(d["event_id"] for d in decoded)
    assert set(counts) == valid_ids
    assert max(counts.values()) == 1, "an event was evaluated twice"
    for m, d in zip(evaluations, decoded, strict=True):
        assert m.key == d["user_id"].encode()
    # Three days of traffic under expire_after: 90d, and the end of a bounded input is not the passing
    # of time (its final watermark fires every timer): nobody expires.
    assert load_catalogue(settings.path(settings.stats_file)).expire_after == 90 * 86_400_000
    assert read_topic(settings.kafka.bootstrap_servers, topics.expirations) == []

    dead = [msgspec.json.decode(m.value) for m in read_topic(settings.kafka.bootstrap_servers, topics.dead_letters)]
    assert sorted((d["partition"], d["offset"]) for d in dead) == sorted((m.partition, m.offset) for m in invalid)
    originals = {(m.partition, m.offset): m.value for m in invalid}
    for d in dead:
        assert d["topic"] == topics.events and d["reason"]
        assert base64.b64decode(d["original_b64"]) == originals[(d["partition"], d["offset"])]

    # Each user's last evaluation equals a from-scratch recomputation over the user's events.
    catalogue = load_catalogue(settings.path(settings.stats_file))
    last = last_evaluations(decoded)
    assert set(last) == set(per_user)
    for key, events in per_user.items():
        assert last[key]["seq"] == len(events)
        assert last[key]["event_id"] == events[-1].event_id
        assert last[key]["stats"] == reference.stat_values(catalogue.stats, events), key

    # The Bigtable event log holds exactly the valid events, a user's history reads newest first,
    # and each profile reflects the user's last evaluation.
    assert settings.bigtable.enabled
    from sinks.bigtable import keys
    from sinks.bigtable.reader import read_history, read_profile

    assert_event_log_is(settings, per_user)
    width = settings.bigtable.hash_prefix_hex

    hottest = max(per_user, key=lambda k: len(per_user[k]))
    history = read_history(settings.bigtable, *hottest)
    assert [h["ts"] for h in history] == sorted((e.ts for e in per_user[hottest]), reverse=True)
    assert [h["event_id"] for h in history] == [  # equal ts: the event-id discriminator orders them
        e.event_id for e in sorted(per_user[hottest], key=lambda e: keys.event_key(*hottest, e.ts, e.event_id, width))]
    for key in list(per_user)[:50] + [hottest]:
        profile = read_profile(settings.bigtable, *key)
        assert profile is not None
        assert (profile["seq"], profile["event_id"], profile["stats"]) == (
            last[key]["seq"], last[key]["event_id"], last[key]["stats"]), key
