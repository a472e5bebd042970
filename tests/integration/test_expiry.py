"""Expiry timers across a crash: with `expire_after: 12h` on 34 hours of traffic many users expire,
some when their next event comes (reported just before its evaluation), the others only by their
event-time timer. The job runs unbounded on live input, as in production, is killed at a random point and
restored from the latest checkpoint, and runs until the watermark has passed every deadline.

Asserted: every due expiry is written with the exact content (testing.check_expirations), none that
is not due, among them the expiries whose timer only the checkpoint can have brought back (the
restored job did not re-run the event that registered it); stats, segments, dead letters and
Bigtable as in every crash test. Those timers are what jobs/timer_safe.py is for: with PyFlink's
stock operator a kill -9 loses the timers registered in the bundle just before a barrier.
"""

from __future__ import annotations

import msgspec
import pytest
import yaml

from operators.catalogue import load_catalogue
from operators.evaluator import TIMER_SLOTS
from segstream import reference
from segstream.config import PROJECT_ROOT
from segstream.kafka_admin import read_topic
from segstream.testing import (
    TopicWatcher,
    check_results,
    crash_and_recover,
    crash_config,
    due_expirations,
    events_by_user,
    expiry_id,
    feed_while_running,
    traffic,
    valid_ids_of,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_expiry_across_a_crash_and_restore(job_config, tmp_path):
    stats = yaml.safe_load((PROJECT_ROOT / "conf" / "stats.yaml").read_text())
    stats["expire_after"] = "12h"
    stats_file = tmp_path / "stats-12h.yaml"
    stats_file.write_text(yaml.safe_dump(stats, sort_keys=False))
    _, config_path = crash_config(job_config[1], tmp_path / "crash.yaml")
    data = yaml.safe_load(config_path.read_text())
    data["stats_file"] = str(stats_file)
    settings = write_config(config_path, data)
    seed = 5
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    records = traffic(seed)
    # Each user's events in the order produced, which the idempotent producer keeps in the topic.
    per_user, _ = events_by_user(records)
    catalogue = load_catalogue(stats_file)
    rules = {r["id"]: r for r in yaml.safe_load(settings.path(settings.rules_file).read_text())["rules"]}
    lives = {user: reference.lives(events, catalogue.expire_after) for user, events in per_user.items()}

    expirations = TopicWatcher(bootstrap, topics.expirations, record_id=expiry_id)
    evaluations = TopicWatcher(bootstrap, topics.evaluations)

    resolution = catalogue.expire_after // TIMER_SLOTS

    def registered_by(user) -> str:
        """The event that registered the user's last timer: the first of the last life whose
        running greatest ts reached the last deadline's slot (later ones leave the slot as it is)."""
        life, greatest = lives[user][-1], None
        slots = []
        for e in life:
            greatest = e.ts if greatest is None else max(greatest, e.ts)
            slots.append(-(-(greatest + catalogue.expire_after) // resolution) * resolution)
        return life[slots.index(slots[-1])].event_id

    def from_checkpoint(ends_at_kill: dict[int, int], timer_only: set) -> frozenset:
        """Timer-only expiries whose timer the restored job did not register itself: it had to come
        back from the checkpoint."""
        def ran_after_restore(event_id: str) -> bool:
            return any(o >= ends_at_kill.get(p, 0) for p, o in evaluations.locations.get(event_id, ()))
        return frozenset(k for k in timer_only if not ran_after_restore(registered_by(k[:2])))

    # Which expiries are due depends on each partition's greatest ts: known once all input is in
    # the topic, which it is by the time every valid event is evaluated (when this is first asked).
    required: dict[tuple, dict] = {}

    def every_due_expiry_written() -> bool:
        if not required:
            required.update(due_expirations(settings, read_topic(bootstrap, topics.events), lives, catalogue,
                                            rules)[0])
        return required.keys() <= expirations.event_ids

    # Live input (as in production), still arriving when the kill falls: the restored job then reads
    # on in every partition, so its watermark (not in checkpoints: it restarts from each split's
    # first record) passes every due deadline. Over a backlog read to its end before the restored
    # checkpoint, the restored sources would go idle at once and no timer would ever fire.
    feed = feed_while_running(settings, records)
    try:
        run = crash_and_recover(settings, config_path, tmp_path, seed, valid_ids_of(records),
                                also_wait_for=every_due_expiry_written, bounded=False)
        feed.join(60)
        # A user's last life can only be reported by its timer: no later event comes.
        timer_only = {key for key, record in required.items() if record["seq"] == len(per_user[key[:2]])}
        restored = from_checkpoint(run.ends_at_kill, timer_only)
    finally:
        expirations.close()
        evaluations.close()
    assert len(required) > 100 and len(timer_only) > 20, (len(required), len(timer_only))
    print(f"\n{run}")
    assert run.mid_stream, f"the kill did not fall mid-stream: {run}"
    assert restored, f"no timer had to come from the checkpoint: the kill proves nothing about timers ({run})"

    counts = check_results(settings)
    written = {expiry_id(msgspec.json.decode(m.value)) for m in read_topic(bootstrap, topics.expirations)}
    assert restored <= written
    print(counts, f"timers restored from {run.checkpoint}: {len(restored & written)} of {len(restored)} fired")
