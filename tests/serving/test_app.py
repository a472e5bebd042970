"""The HTTP layer without a broker (Kafka is a closed port): refusals, 503 within the deadline,
health, metrics and the OpenAPI schema. The answers themselves: tests/integration/test_serving.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from segstream.config import Settings
from segstream.testing import free_port
from tests.serving.conftest import auth, front, store

DEADLINE_MS = 400


@pytest.fixture
def offline(tmp_path: Path):
    settings = Settings(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"})  # nobody listens
    keys = store(tmp_path)
    key, _ = keys.add("acme")
    with front(settings, keys, "unit", deadline_ms=DEADLINE_MS, max_body_bytes=4096) as client:
        yield client, key


def test_refusals(offline) -> None:
    client, key = offline
    event = {"user_id": "u1", "name": "view"}
    cases = [
        (client.post("/v1/track", json=event), 401, "missing key"),
        (client.post("/v1/track", json=event, headers={"Authorization": key}), 401, "missing key"),
        (client.post("/v1/track", json=event, headers=auth("sk_nope")), 401, "unknown key"),
        (client.post("/v1/track", json={**event, "tenant": "other"}, headers=auth(key)), 403, "the body's tenant"),
        (client.post("/v1/track", content=b"{not json", headers=auth(key)), 400, "not UTF-8 JSON"),
        (client.post("/v1/track", json={**event, "user_id": ""}, headers=auth(key)), 400, "user_id is empty"),
        (client.post("/v1/track", json={**event, "x": 1}, headers=auth(key)), 400, "schema: Object contains unknown"),
        (client.post("/v1/track", json={**event, "values": {"s": "x" * 5000}}, headers=auth(key)), 413,
         "body is over the 4096 byte limit"),
    ]
    for response, status, reason in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"].startswith(reason), response.text
    metrics = client.get("/metrics").text
    assert 'segstream_serving_requests_total{status="401"} 3.0' in metrics
    assert 'segstream_serving_requests_total{status="400"} 3.0' in metrics


def test_kafka_unreachable_is_503_within_the_deadline(offline) -> None:
    client, key = offline
    started = time.monotonic()
    response = client.post("/v1/track", json={"user_id": "u1", "name": "view"}, headers=auth(key))
    took = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["error"].startswith("Kafka did not take the event")
    assert took < DEADLINE_MS / 1000 + 1.0, took  # the deadline, plus the loaded machine's slack
    assert client.get("/healthz").status_code == 503


def test_openapi_names_the_routes(offline) -> None:
    client, _ = offline
    schema = client.get("/openapi.json").json()
    track = schema["paths"]["/v1/track"]["post"]
    assert {"200", "202", "400", "401", "403", "413", "503"} <= set(track["responses"])
    assert track["requestBody"]["content"]["application/json"]["schema"]["required"] == ["user_id", "name"]
    assert {"/healthz", "/metrics"} <= set(schema["paths"])


def test_batch_refusals_name_the_event_and_produce_nothing(offline) -> None:
    client, key = offline
    ok = {"user_id": "u1", "name": "view"}
    cases = [
        (client.post("/v1/track/batch", json=[ok]), 401, "missing key"),
        (client.post("/v1/track/batch", json=ok, headers=auth(key)), 400, "schema: Expected `array`"),
        (client.post("/v1/track/batch", json=[], headers=auth(key)), 400, "the batch is empty"),
        (client.post("/v1/track/batch", json=[{"user_id": "u", "name": "v"}] * 101, headers=auth(key)), 400,
         "the batch has 101 events, over the limit of 100"),
        (client.post("/v1/track/batch", json=[ok, {"user_id": "", "name": "v"}], headers=auth(key)), 400,
         "event 1: user_id is empty"),
        (client.post("/v1/track/batch", json=[ok, {**ok, "y": 2}], headers=auth(key)), 400,
         "event 1: schema: Object contains unknown field `y`"),
        (client.post("/v1/track/batch", json=[{**ok, "tenant": "other"}], headers=auth(key)), 403, "event 0: the body"),
        (client.post("/v1/track/batch", json=[{**ok, "event_id": "e"}, {**ok, "event_id": "e"}], headers=auth(key)),
         400, "the batch repeats an event_id"),
    ]
    for response, status, reason in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"].startswith(reason), response.text
    # Valid, but Kafka is down: 503 within the deadline, naming no event as accepted.
    started = time.monotonic()
    response = client.post("/v1/track/batch", json=[ok, {**ok, "user_id": "u2"}], headers=auth(key))
    assert response.status_code == 503 and response.json()["accepted"] == [], response.text
    assert time.monotonic() - started < DEADLINE_MS / 1000 + 1.0


def test_reads_need_a_key_and_a_contract_user_id(offline) -> None:
    client, key = offline
    assert client.get("/v1/users/u1/profile").status_code == 401
    assert client.get("/v1/users/u1/events", headers=auth("sk_x")).status_code == 401
    response = client.get("/v1/users/" + "u" * 257 + "/profile", headers=auth(key))
    assert response.status_code == 400 and "user_id must be" in response.json()["error"]
    assert client.get("/v1/users/u1/events?limit=0", headers=auth(key)).status_code == 422


def test_rules_are_checked_and_scoped_to_the_keys_tenant(offline, tmp_path: Path) -> None:
    client, key = offline
    rule = {"description": "any event", "when": "events_total >= 1"}
    cases = [
        (client.put("/v1/rules/r1", json=rule), 401, "missing key"),
        (client.put("/v1/rules/a:b", json=rule, headers=auth(key)), 400, "rule id must be"),
        (client.put("/v1/rules/r1", json={**rule, "tenant": "other"}, headers=auth(key)), 403, "a tenant key"),
        (client.put("/v1/rules/r1", json={**rule, "id": "x"}, headers=auth(key)), 400, "the rule id is the path's"),
        (client.put("/v1/rules/r1", json=[rule], headers=auth(key)), 400, "a rule is a JSON object"),
        (client.put("/v1/rules/r1", json={**rule, "when": "no_such_stat > 1"}, headers=auth(key)), 400,
         "rule 'acme:r1': `when` uses unknown name(s) 'no_such_stat'"),
        (client.put("/v1/rules/r1", json={**rule, "when": "events_total >="}, headers=auth(key)), 400,
         "rule 'acme:r1': `when` does not compile"),
        # Over a limit (operators/rule_limits.py): refused before anything compiles it.
        (client.put("/v1/rules/r1", json={**rule, "when": "events_total > 1 && " + " " * 66_000 + ")"},
                    headers=auth(key)), 413, "body is over"),
        (client.put("/v1/rules/r1", json={**rule, "when": "[1, 2].all(x, [3].all(y, [4].all(z, x < y + z)))"},
                    headers=auth(key)), 400, "rule 'acme:r1': `when` nests comprehensions deeper than 2"),
        (client.delete("/v1/rules/a:b", headers=auth(key)), 400, "rule id must be"),
        # Valid: published as acme:r1, but Kafka is down.
        (client.put("/v1/rules/r1", json=rule, headers=auth(key)), 503, "Kafka did not take the rule"),
        (client.delete("/v1/rules/r1", headers=auth(key)), 503, "Kafka did not take the rule"),
    ]
    for response, status, reason in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"].startswith(reason), response.text


def test_erasure_needs_the_tenants_key(offline) -> None:
    """DELETE /v1/users/{id} (docs/security.md, "Erasure"): no key or an unknown one is 401 and sends
    nothing; a valid key's erase command goes to Kafka (down here: 503)."""
    client, key = offline
    cases = [
        (client.delete("/v1/users/u1"), 401, "missing key"),
        (client.delete("/v1/users/u1", headers=auth("sk_nope")), 401, "unknown key"),
        (client.delete("/v1/users/" + "x" * 300, headers=auth(key)), 400, "user_id must be 1 to 256 bytes"),
        (client.delete("/v1/users/u1", headers=auth(key)), 503, "Kafka did not take the erase command"),
    ]
    for response, status, reason in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"].startswith(reason), response.text
