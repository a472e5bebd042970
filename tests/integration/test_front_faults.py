"""The tracking front under faults, on the real broker (no job: a 202 is the front's whole promise,
that the event is durable in Kafka; the answers themselves are tests/integration/test_serving.py).

- Kafka unreachable (the broker of a private stack stopped): 503 within the deadline, never a
  hang, /healthz 503; when the broker is back the same front takes events again and its reply
  consumer reads its topic again, by itself.
- A front killed (kill -9) and another stopped (SIGTERM) while clients keep sending: every event
  answered 200 or 202 is on `events`, as it was sent.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from confluent_kafka import Producer

from operators.events import parse_record
from segstream.kafka_admin import read_topic
from segstream.testing import LocalStack, free_port, wait_for, write_config
from serving.keys import KeyStore
from serving.process import FrontProcess
from tests.serving.conftest import auth, front, with_serving

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DEADLINE_MS = 1500
SLACK_S = 1.5  # over the deadline, for a loaded 2-core machine


def test_kafka_down_is_503_within_the_deadline_and_the_front_recovers(tmp_path: Path) -> None:
    (tmp_path / "stack").mkdir()
    stack = LocalStack.start(tmp_path / "stack")
    try:
        settings = with_serving(stack.settings, reply_topic_prefix="faults-reply-")
        keys = KeyStore(tmp_path / "tenants.json")
        key, _ = keys.add("acme")
        accepted: list[str] = []
        with front(settings, keys, "faults", deadline_ms=DEADLINE_MS) as client:
            state = client.app.state.front
            wait_for(state.replies_ready.is_set, 60, "the reply consumer", 0.05)

            def track(n: int) -> tuple[int, float]:
                started = time.monotonic()
                response = client.post("/v1/track", json={"event_id": f"e{n}", "user_id": "u1", "name": "view"},
                                       headers=auth(key))
                if response.status_code in (200, 202):
                    accepted.append(f"e{n}")
                return response.status_code, time.monotonic() - started

            assert track(0)[0] == 202  # no job: durable, not evaluated

            stack.stack.kafka.stop()
            for n in (1, 2):
                status, took = track(n)
                assert status == 503 and took < DEADLINE_MS / 1000 + SLACK_S, (status, took)
            started = time.monotonic()
            response = client.post("/v1/track/batch", json=[{"user_id": "u1", "name": "view"}], headers=auth(key))
            assert response.status_code == 503 and response.json()["accepted"] == [], response.text
            assert time.monotonic() - started < DEADLINE_MS / 1000 + SLACK_S
            response = client.put("/v1/rules/r1", json={"description": "d", "when": "events_total >= 1"},
                                  headers=auth(key))
            assert response.status_code == 503, response.text
            assert client.get("/healthz").status_code == 503

            # librdkafka drops the refused events at its message timeout (= the deadline, scanned once a
            # second): from then on they can never reach Kafka, checked at the end.
            wait_for(lambda: len(state.producer) == 0, 30, "the producer to drop the refused events", 0.05)
            stack.stack.kafka.start(durable=True)  # the same storage: topics and offsets are back
            attempts = iter(range(3, 1000))
            wait_for(lambda: track(next(attempts))[0] == 202, 120, "the front to take events again", 0.2)
            assert client.get("/healthz").status_code == 200
            # The reply consumer reads its topic again (a record on it, as the job's ReplySink writes).
            received = state.replies_received
            probe = Producer({"bootstrap.servers": stack.bootstrap})
            probe.produce(state.reply_topic, b'{"event_id": "nobody-waits"}', b"nobody-waits")
            assert probe.flush(30) == 0
            probe.close()
            wait_for(lambda: state.replies_received > received, 60, "the reply consumer to read again", 0.05)

        on_topic = [parse_record(m.value).event_id
                    for m in read_topic(stack.bootstrap, stack.settings.kafka.topics.events)]
        assert set(accepted) <= set(on_topic), set(accepted) - set(on_topic)
        assert "e1" not in on_topic and "e2" not in on_topic  # the broker was down: refused, not stored
    finally:
        stack.stop()


class Load:
    """`clients` threads sending events as fast as they are answered; each remembers what it sent and
    the answer (a status, or the connection error of a front that went away)."""

    def __init__(self, url: str, key: str, clients: int):
        self.url, self.key = url, key
        self.stop = threading.Event()
        self.accepted: dict[str, dict] = {}  # event_id -> body, answered 200 or 202
        self.other: dict[str, int] = {}  # status (0: no answer) -> count
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in range(clients)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def _run(self, client: int) -> None:
        with httpx.Client(base_url=self.url, headers=auth(self.key), timeout=10) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                body = {"event_id": f"c{client}-{n}", "user_id": f"u{n % 7}", "name": "view",
                        "values": {"n": n, "client": client}}
                try:
                    status = http.post("/v1/track", json=body).status_code
                except httpx.TransportError:
                    status = 0
                with self.lock:
                    if status in (200, 202):
                        self.accepted[body["event_id"]] = body
                    else:
                        self.other[str(status)] = self.other.get(str(status), 0) + 1
                if status == 0:
                    self.stop.wait(0.05)  # the front is down: do not spin while the next one starts


def test_a_front_killed_or_stopped_mid_load_loses_no_accepted_event(job_config, tmp_path: Path) -> None:
    base, config_path = job_config
    data = yaml.safe_load(config_path.read_text())
    data["serving"] = {"reply_topic_prefix": f"{base.kafka.topics.events}-reply-", "deadline_ms": 300,
                       "keys_file": str(tmp_path / "tenants.json"), "instance_id": "restarted"}
    settings = write_config(config_path, data)
    key, _ = KeyStore(tmp_path / "tenants.json").add("acme")
    port = free_port()

    first = FrontProcess.start(config_path, port, tmp_path / "front-1.log")
    second = None
    try:
        first.wait_ready(120)
        with Load(first.url, key, clients=4) as load:
            wait_for(lambda: load.count() >= 40, 120, "40 accepted events", 0.05, abort=first.exit_reason)
            first.kill()  # kill -9, requests in flight
            at_kill = load.count()
            second = FrontProcess.start(config_path, port, tmp_path / "front-2.log")
            second.wait_ready(120)
            wait_for(lambda: load.count() >= at_kill + 40, 120, "40 more accepted events", 0.05,
                     abort=second.exit_reason)
            # SIGTERM: the requests in flight finish, the producer flushes, then uvicorn exits by the signal.
            assert second.terminate() == -signal.SIGTERM
            assert "Application shutdown complete" in second.tail(), second.tail()
            accepted = dict(load.accepted)
        print(f"accepted {len(accepted)} events, other answers {load.other}")
        assert load.other.get("0", 0) > 0, "the clients never found the front gone: no restart under load"

        on_topic = {}
        for message in read_topic(settings.kafka.bootstrap_servers, settings.kafka.topics.events):
            event = parse_record(message.value)
            on_topic[event.event_id] = event
        missing = set(accepted) - set(on_topic)
        assert not missing, f"{len(missing)} accepted events are not in Kafka, e.g. {sorted(missing)[:5]}"
        for event_id, body in accepted.items():
            event = on_topic[event_id]
            assert (event.tenant, event.user_id, event.name, event.values) == (
                "acme", body["user_id"], body["name"], body["values"]), event_id
    finally:
        first.kill()
        if second is not None:
            second.kill()
