"""The tracking front on the real stack, with the job running unbounded (as in production): every
request answered 200 carries the very evaluation the job wrote to `evaluations` for that event_id;
two fronts side by side each get exactly their own answers on their own reply topics; a batch is
answered in order; a rule published with a tenant's key applies to that tenant only; profile and
history reads see only the key's tenant; a retried event_id (through either front) gets the same
receipt and is counted once (one evaluation, one Bigtable row); an answer for a reply topic that
does not exist is dropped without stalling the job; refused requests (401, 403,
400, 413) put nothing on `events`."""

from __future__ import annotations

import time

import msgspec
import pytest
import yaml
from confluent_kafka import Producer

from segstream.job_process import JobProcess
from segstream.kafka_admin import end_offsets, read_topic
from segstream.testing import wait_for, write_config
from serving.app import receipt_of
from serving.keys import KeyStore
from tests.serving.conftest import auth, front

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Generous for a loaded 2-core machine: the test is about which answer, not how fast (bench/ is).
DEADLINE_MS = 10_000


def test_fronts_get_exactly_their_own_answers_equal_to_the_evaluations(job_config, tmp_path):
    base, config_path = job_config
    data = yaml.safe_load(config_path.read_text())
    prefix = f"{base.kafka.topics.events}-reply-"
    data["serving"] = {"reply_topic_prefix": prefix, "deadline_ms": DEADLINE_MS}
    settings = write_config(config_path, data)
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    keys = KeyStore(tmp_path / "tenants.json")
    key_acme, _ = keys.add("acme")
    key_globex, _ = keys.add("globex")

    job = JobProcess.start(config_path, [], tmp_path / "job.log", flink_log_dir=tmp_path / "flink-log")
    try:
        with front(settings, keys, "a") as a, front(settings, keys, "b") as b:
            fronts = {"a": a, "b": b}
            for client in fronts.values():
                wait_for(client.app.state.front.replies_ready.is_set, 60, "the reply consumer", 0.05)
                assert client.get("/healthz").status_code == 200
            sent: dict[str, set[str]] = {"a": set(), "b": set()}
            answered: dict[str, dict] = {}

            def track(name: str, key: str, body: dict) -> tuple[int, dict]:
                response = fronts[name].post("/v1/track", json=body, headers=auth(key))
                assert response.status_code in (200, 202), response.text
                event_id = response.json()["event_id"]
                sent[name].add(event_id)
                if response.status_code == 200:
                    answered[event_id] = response.json()
                return response.status_code, response.json()

            # Until the job runs, requests are accepted (202) and answered later, on the same topic.
            wait_for(lambda: track("a", key_acme, {"user_id": "warm", "name": "view"})[0] == 200, 600,
                     "the job to answer", 0.5, abort=job.exit_reason)
            statuses = []
            for i in range(12):
                name, key = ("a", key_acme) if i % 2 == 0 else ("b", key_globex)
                statuses.append(track(name, key, {"event_id": f"e{i}", "user_id": f"u{i % 3}",
                                                  "name": "purchase" if i % 4 == 0 else "view",
                                                  "values": {"amount": 1000.0 * i}})[0])
            assert statuses == [200] * 12

            # A batch: results in the order sent, each the receipt of its own event.
            batch = [{"event_id": f"b{i}", "user_id": f"bu{i}", "name": "view"} for i in range(5)]
            response = b.post("/v1/track/batch", json=batch, headers=auth(key_globex))
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            assert [r["event_id"] for r in results] == [f"b{i}" for i in range(5)]
            assert all(r["status"] == 200 and r["receipt"]["event_id"] == r["event_id"] for r in results)
            sent["b"].update(r["event_id"] for r in results)
            answered.update({r["event_id"]: r["receipt"] for r in results})

            # A rule published with a tenant's key applies to that tenant only, until deleted.
            rule = {"description": "any event", "when": "events_total >= 1"}
            response = a.put("/v1/rules/any_event", json=rule, headers=auth(key_acme))
            assert response.status_code == 202 and response.json()["rule_id"] == "acme:any_event", response.text
            entered = wait_for(lambda: "acme:any_event" in (r := track("a", key_acme, {"user_id": "r", "name": "v"})[1])
                               .get("segments", []) and r, 120, "the rule to apply", 0.2)
            other = track("b", key_globex, {"user_id": "r", "name": "v"})[1]
            assert other["rules_version"] >= entered["rules_version"] and "acme:any_event" not in other["segments"]
            assert a.delete("/v1/rules/any_event", headers=auth(key_acme)).status_code == 202
            wait_for(lambda: "acme:any_event" in track("a", key_acme, {"user_id": "r", "name": "v"})[1]
                     .get("exited", []), 120, "the rule's deletion to apply", 0.2)

            # An event naming a reply topic that does not exist (its front is gone) is evaluated and
            # its answer dropped: the next event of the same user is answered within the deadline.
            ghost = Producer({"bootstrap.servers": bootstrap})
            ghost.produce(topics.events, msgspec.json.encode({"event_id": "ghost", "user_id": "g", "ts": int(
                time.time() * 1000), "name": "v", "tenant": "acme"}), b"g", timestamp=int(time.time() * 1000),
                headers=[("segstream-reply", (prefix + "gone").encode())])
            assert ghost.flush(10) == 0
            assert track("a", key_acme, {"user_id": "g", "name": "v"})[1]["seq"] == 2

            # Each reply topic holds the answers of exactly the events its front sent, once each
            # (no restart here: the at-least-once sink writes no copies).
            def reply_ids(name: str) -> list[str]:
                topic = fronts[name].app.state.front.reply_topic
                return [m.key.decode() for m in read_topic(bootstrap, topic, committed_only=False)]

            for name in fronts:
                wait_for(lambda n=name: set(reply_ids(n)) == sent[n], 120, f"front {name}'s answers", 0.5)
                ids = reply_ids(name)
                assert len(ids) == len(set(ids)) == len(sent[name])
            assert not sent["a"] & sent["b"]

            # Every receipt is the evaluation the job wrote for that event_id.
            evaluations: dict[str, dict] = {}
            wait_for(lambda: evaluations.update({
                e["event_id"]: e for e in (msgspec.json.decode(m.value) for m in
                                           read_topic(bootstrap, topics.evaluations, committed_only=False))})
                or set(answered) <= set(evaluations), 120, "the evaluations", 0.5)
            for event_id, receipt in answered.items():
                assert receipt == receipt_of(evaluations[event_id]), event_id
            assert {evaluations[f"e{i}"]["tenant"] for i in range(12)} == {"acme", "globex"}
            assert answered["e2"]["seq"] == evaluations["e2"]["seq"] >= 1
            assert "segstream_serving_answered_total" in a.get("/metrics").text

            # Retries are safe: the same event_id again, through the same front and the other one
            # (no ts: each request gets the front's clock), is answered with the first receipt and
            # changes nothing; the user's next event is their second.
            purchase = {"event_id": "retry-1", "user_id": "ru", "name": "purchase", "values": {"amount": 10.0}}
            status, original = track("a", key_acme, purchase)
            assert status == 200 and original["seq"] == 1 and original["stats"]["purchases"] == 1, original
            assert [track(name, key_acme, {**purchase, "values": {"amount": 99.0}}) for name in ("a", "b")] \
                == [(200, original)] * 2
            following = track("a", key_acme, {"event_id": "retry-2", "user_id": "ru", "name": "view"})[1]
            assert (following["seq"], following["stats"]["events_total"], following["stats"]["total_spent"]) \
                == (2, 2, 10.0), following

            def evaluated(user: str) -> list[str]:
                return [e["event_id"] for e in (msgspec.json.decode(m.value) for m in read_topic(
                    bootstrap, topics.evaluations, committed_only=False)) if e["user_id"] == user]

            retried = wait_for(lambda: "retry-2" in (ids := evaluated("ru")) and ids, 120, "ru's evaluations", 0.5)
            assert retried == ["retry-1", "retry-2"], "one evaluation per event, none for the retries"

            # Reads from Bigtable, for the key's tenant only; not read-your-writes, so waited for.
            profile = wait_for(lambda: (r := b.get("/v1/users/bu0/profile", headers=auth(key_globex))).status_code
                               == 200 and r.json(), 120, "bu0's profile in Bigtable", 0.5)
            assert (profile["event_id"], profile["seq"], profile["tenant"]) == ("b0", 1, "globex")
            assert profile["segments"] == answered["b0"]["segments"]
            history = b.get("/v1/users/bu0/events?limit=5", headers=auth(key_globex)).json()["events"]
            assert [e["event_id"] for e in history] == ["b0"]
            history = wait_for(lambda: (r := a.get("/v1/users/ru/events", headers=auth(key_acme)).json()["events"])
                               and r[0]["event_id"] == "retry-2" and r, 120, "ru's history in Bigtable", 0.5)
            assert [e["event_id"] for e in history] == ["retry-2", "retry-1"], "one row for the event and its retries"
            assert a.get("/v1/users/bu0/profile", headers=auth(key_acme)).status_code == 404
            assert a.get("/v1/users/bu0/events", headers=auth(key_acme)).json() == {"events": []}

            # Refused requests produce nothing.
            before = end_offsets(bootstrap, topics.events)
            refused = [
                a.post("/v1/track", json={"user_id": "u", "name": "v"}),
                a.post("/v1/track", json={"user_id": "u", "name": "v"}, headers=auth("sk_unknown")),
                a.post("/v1/track", json={"user_id": "u", "name": "v", "tenant": "globex"}, headers=auth(key_acme)),
                a.post("/v1/track", json={"user_id": "u" * 300, "name": "v"}, headers=auth(key_acme)),
                a.post("/v1/track", json={"user_id": "u", "name": "v", "colour": 1}, headers=auth(key_acme)),
                a.post("/v1/track", content=b"x" * (settings.serving.max_body_bytes + 1), headers=auth(key_acme)),
            ]
            assert [r.status_code for r in refused] == [401, 401, 403, 400, 400, 413]
            assert end_offsets(bootstrap, topics.events) == before
    finally:
        job.kill()
