"""The HTTP API of the tracking front (FastAPI on uvicorn): docs/serving.md.

    POST /v1/track     Bearer key; one event -> 200 its evaluation receipt, or 202 after the deadline
    GET  /healthz      200 when Kafka answers, else 503
    GET  /metrics      Prometheus text
    GET  /openapi.json the schema
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel

from segstream.config import Settings
from serving.front import Front, KafkaUnavailable
from serving.keys import KeyEntry, KeyStore
from serving.validation import Refused, event_of

RECEIPT_FIELDS = ("event_id", "user_id", "seq", "segments", "entered", "exited", "rules_version", "stats")


def receipt_of(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The receipt of an evaluation (docs/events.md): the fields a tracking client gets back."""
    return {field: evaluation.get(field) for field in RECEIPT_FIELDS}


# --- schema for /openapi.json (the body is decoded by serving.validation, strictly) ----------------


class TrackRequest(BaseModel):
    """One event. Unknown fields are refused; the tenant is the key's."""

    user_id: str
    name: str
    event_id: str | None = None
    ts: int | None = None
    values: dict[str, int | float | str | bool | None] | None = None
    tenant: str | None = None


class Receipt(BaseModel):
    """The evaluation of this event (its state includes this event and every earlier one of the user)."""

    event_id: str
    user_id: str
    seq: int
    segments: list[str]
    entered: list[str]
    exited: list[str]
    rules_version: int
    stats: dict[str, Any]


class Accepted(BaseModel):
    """The event is durable in Kafka; its evaluation was not back within the deadline."""

    event_id: str
    status: str = "accepted"


class Problem(BaseModel):
    error: str


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("segstream_serving_requests", "Tracking requests by HTTP status",
                                ["status"], registry=self.registry)
        self.answered = Counter("segstream_serving_answered", "Requests answered 200 with their evaluation",
                                registry=self.registry)
        self.accepted_late = Counter("segstream_serving_accepted_late",
                                     "Requests answered 202: evaluation not back within the deadline",
                                     registry=self.registry)
        self.latency = Histogram("segstream_serving_request_seconds", "Tracking request latency (200 and 202)",
                                 buckets=(.005, .01, .025, .05, .075, .1, .15, .2, .25, .35, .5, 1, 2.5, 5),
                                 registry=self.registry)


def _problem(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body is over the {limit} byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body is over the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: Settings, keys: KeyStore | None = None) -> FastAPI:
    serving = settings.serving
    store = keys or KeyStore(settings.path(serving.keys_file))
    deadline = serving.deadline_ms / 1000
    metrics = Metrics()
    front = Front(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        front.start()
        try:
            yield
        finally:
            await asyncio.to_thread(front.stop)

    app = FastAPI(title="segstream tracking front", version="1", lifespan=lifespan,
                  description="Every tracking request is answered with its own evaluation (docs/serving.md).")
    app.state.front = front
    app.state.metrics = metrics

    def tenant_of(request: Request) -> KeyEntry:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Refused(401, "missing key: send Authorization: Bearer <key>")
        entry = store.lookup(key.strip())
        if entry is None:
            raise Refused(401, "unknown key")
        return entry

    @app.post("/v1/track", responses={
        200: {"model": Receipt}, 202: {"model": Accepted}, 400: {"model": Problem}, 401: {"model": Problem},
        403: {"model": Problem}, 413: {"model": Problem}, 503: {"model": Problem}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": TrackRequest.model_json_schema()}}}})
    async def track(request: Request) -> Response:
        """Track one event; answer with its evaluation receipt (200) or, after the deadline, 202."""
        started = time.monotonic()
        try:
            entry = tenant_of(request)
            raw_body = await _read_body(request, serving.max_body_bytes)
            event, value = event_of(raw_body, entry.tenant)
        except Refused as refused:
            metrics.requests.labels(str(refused.status)).inc()
            return _problem(refused.status, refused.reason)
        answer = front.expect(event.event_id)
        try:
            await front.produce(event.user_id, value, event.ts, deadline)
        except KafkaUnavailable as exc:
            front.forget(event.event_id, answer)
            metrics.requests.labels("503").inc()
            return _problem(503, f"Kafka did not take the event: {exc}")
        remaining = deadline - (time.monotonic() - started)
        try:
            evaluation = await asyncio.wait_for(asyncio.shield(answer), max(remaining, 0.0))
        except TimeoutError:
            front.forget(event.event_id, answer)
            metrics.requests.labels("202").inc()
            metrics.accepted_late.inc()
            metrics.latency.observe(time.monotonic() - started)
            return JSONResponse({"event_id": event.event_id, "status": "accepted"}, status_code=202)
        metrics.requests.labels("200").inc()
        metrics.answered.inc()
        metrics.latency.observe(time.monotonic() - started)
        return Response(orjson.dumps(receipt_of(orjson.loads(evaluation))), media_type="application/json")

    @app.get("/healthz", responses={503: {"model": Problem}})
    async def healthz() -> Response:
        """200 when Kafka answers a metadata request for the events topic, else 503."""
        if await asyncio.to_thread(front.kafka_reachable, min(2.0, max(deadline, 0.5))):
            return JSONResponse({"kafka": "ok", "instance": front.instance, "reply_topic": front.reply_topic,
                                 "replies_ready": front.replies_ready.is_set()})
        return _problem(503, "Kafka is unreachable")

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text: requests by status, answered, accepted late, latency histogram."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
