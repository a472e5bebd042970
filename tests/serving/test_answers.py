"""An evaluation that is back proves its event is in Kafka (the job read it there), so it is
answered 200 even when the producer's acknowledgement has not reached the front: on a busy
machine the acknowledgement can come after the answer, or after the deadline.

No broker here (Kafka is a closed port: acknowledgements never come); the answer is handed to
the front as its reply consumer thread hands one over (Front._complete through the event loop),
once the request waits for it."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest

from segstream.config import Settings
from segstream.testing import free_port, wait_for
from serving.app import receipt_of
from tests.serving.conftest import auth, front, store

DEADLINE_MS = 2_000  # long enough for the answering thread on a loaded machine


@pytest.fixture
def offline(tmp_path: Path):
    settings = Settings(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"})  # nobody listens
    keys = store(tmp_path)
    key, _ = keys.add("acme")
    with front(settings, keys, "unit", deadline_ms=DEADLINE_MS) as client:
        yield client, key


def evaluation(event_id: str) -> dict:
    return {"event_id": event_id, "user_id": "u1", "tenant": "acme", "seq": 1, "segments": ["new"],
            "entered": ["new"], "exited": [], "rules_version": 3, "stats": {"events_total": 1}, "ts": 1}


def answer_when_waited_for(client, event_ids: list[str]) -> threading.Thread:
    served = client.app.state.front

    def answer() -> None:
        wait_for(lambda: all(e in served._waiters for e in event_ids), 30, "the request to wait", 0.005)
        served._call(served._complete, [(e, orjson.dumps(evaluation(e))) for e in event_ids])

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


def test_an_answered_event_is_200_without_its_acknowledgement(offline) -> None:
    client, key = offline
    thread = answer_when_waited_for(client, ["e1"])
    response = client.post("/v1/track", json={"event_id": "e1", "user_id": "u1", "name": "view"}, headers=auth(key))
    thread.join(30)
    assert response.status_code == 200, response.text
    assert response.json() == receipt_of(evaluation("e1"))


def test_a_batch_names_the_answered_events_as_accepted_when_kafka_fails_the_rest(offline) -> None:
    client, key = offline
    thread = answer_when_waited_for(client, ["b1"])
    batch = [{"event_id": f"b{i}", "user_id": "u1", "name": "view"} for i in (1, 2)]
    response = client.post("/v1/track/batch", json=batch, headers=auth(key))
    thread.join(30)
    assert response.status_code == 503, response.text
    assert response.json()["accepted"] == ["b1"]
