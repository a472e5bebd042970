"""Bad requests over HTTP, without a broker or a JVM: every one is refused with its reason and
nothing reaches the producer (not even its queue: Kafka being down would hide a produce that
should not have happened behind a 503)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.event_time import DEFAULT_MAX_FUTURE_SKEW_MS
from operators.events import MAX_FIELD_BYTES, MAX_TS, MAX_USER_ID_BYTES
from segstream.config import Settings as AppSettings
from segstream.testing import free_port, wait_for
from serving.validation import Refused, decode_batch, event_of
from tests.serving.conftest import auth, front, store

LIMIT = 8192
OK = {"user_id": "u1", "name": "view"}


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory):
    app_settings = AppSettings(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"})  # nobody listens
    keys = store(tmp_path_factory.mktemp("keys"))
    key, _ = keys.add("acme")
    with front(app_settings, keys, "bad-input", deadline_ms=300, max_body_bytes=LIMIT) as client:
        yield client, key


def body(**fields: object) -> bytes:
    return orjson.dumps({**OK, **fields})


CASES = [
    # malformed JSON
    ("truncated", b'{"user_id": "u1", "name": "v"', 400, "not UTF-8 JSON: Input data was truncated"),
    ("empty", b"", 400, "not UTF-8 JSON"),
    ("garbage", b"{not json", 400, "not UTF-8 JSON"),
    ("not UTF-8", b'{"user_id": "\xff", "name": "v"}', 400, "not UTF-8 JSON"),
    ("trailing data", b'{"user_id": "u1", "name": "v"} {}', 400, "not UTF-8 JSON: JSON is malformed: trailing"),
    ("NaN", b'{"user_id": "u1", "name": "v", "values": {"a": NaN}}', 400, "not UTF-8 JSON"),
    ("an array", orjson.dumps([OK]), 400, "schema: Expected `object`, got `array`"),
    ("null", b"null", 400, "schema: Expected `object`, got `null`"),
    # wrong types
    ("user_id int", body(user_id=7), 400, "schema: Expected `str`, got `int` - at `$.user_id`"),
    ("name null", body(name=None), 400, "schema: Expected `str`, got `null` - at `$.name`"),
    ("event_id int", body(event_id=1), 400, "schema: Expected `str | null`, got `int` - at `$.event_id`"),
    ("ts string", body(ts="2026-01-01"), 400, "schema: Expected `int | null`, got `str` - at `$.ts`"),
    ("ts float", body(ts=1.5), 400, "schema: Expected `int | null`, got `float` - at `$.ts`"),
    ("ts bool", body(ts=True), 400, "schema: Expected `int | null`, got `bool` - at `$.ts`"),
    ("values list", body(values=[1]), 400, "schema: Expected `object | null`, got `array` - at `$.values`"),
    ("nested value", body(values={"a": {"b": 1}}), 400, "schema: Expected `bool | int | float | str | null`"),
    ("tenant int", body(tenant=1), 400, "schema: Expected `str | null`, got `int` - at `$.tenant`"),
    # unknown fields (names are case-sensitive)
    ("unknown field", body(colour="red"), 400, "schema: Object contains unknown field `colour`"),
    ("Tenant", body(Tenant="acme"), 400, "schema: Object contains unknown field `Tenant`"),
    # the contract's limits (operators/events.py)
    ("user_id empty", body(user_id=""), 400, "user_id is empty"),
    ("user_id too long", body(user_id="u" * (MAX_USER_ID_BYTES + 1)), 400, "user_id is over 256 bytes"),
    ("user_id too many bytes", body(user_id="é" * (MAX_USER_ID_BYTES // 2 + 1)), 400, "user_id is over 256 bytes"),
    ("event_id empty", body(event_id=""), 400, "event_id is empty"),
    ("event_id too long", body(event_id="e" * (MAX_FIELD_BYTES + 1)), 400, "event_id is over 256 bytes"),
    ("name too long", body(name="n" * (MAX_FIELD_BYTES + 1)), 400, "name is over 256 bytes"),
    ("ts negative", body(ts=-1), 400, "ts is negative"),
    ("ts after 9999", body(ts=MAX_TS + 1), 400, f"ts is after {MAX_TS}"),
    # another tenant; a body over the limit
    ("other tenant", body(tenant="globex"), 403, "the body's tenant is not the key's tenant"),
    ("oversize", body(values={"s": "x" * LIMIT}), 413, f"body is over the {LIMIT} byte limit"),
]


@pytest.mark.parametrize(("raw", "status", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_event_is_refused_with_its_reason_and_nothing_is_produced(offline, raw: bytes, status: int,
                                                                        reason: str) -> None:
    client, key = offline
    response = client.post("/v1/track", content=raw, headers={**auth(key), "Content-Type": "application/json"})
    assert (response.status_code, response.json()["error"][:len(reason)]) == (status, reason), response.text
    assert len(client.app.state.front.producer) == 0


def test_the_limits_themselves_are_accepted_and_reach_the_producer(offline) -> None:
    """The other side of the limits: an event at every limit is valid, so it is produced (with Kafka
    down: 503 at the deadline; librdkafka drops it from its queue at its own message timeout, the
    same deadline, within its once-a-second scan). The ts limit is the front's clock plus
    events.max_future_skew_ms (MAX_TS is further than that today): a ts just inside it."""
    client, key = offline
    ts = int(time.time() * 1000) + DEFAULT_MAX_FUTURE_SKEW_MS // 2
    response = client.post("/v1/track", content=body(user_id="é" * (MAX_USER_ID_BYTES // 2), event_id="e" * 256,
                                                     name="n" * 256, ts=ts), headers=auth(key))
    assert response.status_code == 503, response.text
    wait_for(lambda: len(client.app.state.front.producer) == 0, 10, "the producer's queue to empty", 0.05)


def chunks(total: int, size: int = 1024) -> Iterator[bytes]:
    yield b'{"user_id": "u1", "name": "v", "values": {"s": "'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}}'


def test_an_oversize_body_without_a_length_is_cut_off_at_the_limit(offline) -> None:
    """Chunked (no Content-Length): read only up to the limit, then 413."""
    client, key = offline
    response = client.post("/v1/track", content=chunks(4 * LIMIT), headers=auth(key))
    assert response.status_code == 413 and "byte limit" in response.json()["error"], response.text
    assert len(client.app.state.front.producer) == 0


def test_a_batch_with_one_bad_event_produces_none(offline) -> None:
    client, key = offline
    ok = orjson.dumps(OK)
    for bad, reason in ((b"7", "event 1: schema: Expected `object`"),
                        (b'{"user_id": "\xff", "name": "v"}', "event 1: not UTF-8 JSON: invalid UTF-8"),
                        (orjson.dumps({**OK, "user_id": "u" * 300}), "event 1: user_id is over 256 bytes"),
                        (orjson.dumps({**OK, "colour": 1}), "event 1: schema: Object contains unknown field `colour`")):
        response = client.post("/v1/track/batch", content=b"[" + b",".join([ok, bad, ok]) + b"]", headers=auth(key))
        assert response.status_code == 400 and response.json()["error"].startswith(reason), response.text
        assert len(client.app.state.front.producer) == 0


VALID = body(event_id="e1", ts=5, values={"path": "/", "n": 1.5, "ok": True})


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A valid body with a few bytes replaced, inserted or cut: deep into the parser, unlike noise."""
    raw = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        byte = draw(st.integers(0, 255))
        kind = draw(st.sampled_from(["replace", "insert", "cut"]))
        if kind == "insert" or at == len(raw):
            raw.insert(at, byte)
        elif kind == "replace":
            raw[at] = byte
        else:
            del raw[at:at + draw(st.integers(1, 8))]
    return bytes(raw)


@settings(max_examples=400, deadline=None)
@given(st.one_of(mangled(), st.binary(max_size=64)))
def test_any_bytes_are_an_event_or_a_refusal_never_an_error(raw: bytes) -> None:
    """Whatever the bytes, the front answers: an event the engine takes, or 400/403 with a reason
    (never an exception, which would be a 500)."""
    for decode in (lambda: event_of(raw, "acme"), lambda: decode_batch(b"[" + raw + b"]", 100)):
        try:
            decode()
        except Refused as refused:
            assert refused.status in (400, 403) and refused.reason
