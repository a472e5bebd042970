"""The HTTP API of the tracking front (FastAPI on uvicorn): docs/serving.md.

    POST /v1/track     Bearer key; one event -> 200 its evaluation receipt, or 202 after the deadline
    POST /v1/track/batch  up to 100 events, all valid or none produced; results in order
    GET  /v1/users/{user_id}/profile, /v1/users/{user_id}/events   Bigtable reads (not read-your-writes)
    PUT/DELETE /v1/rules/{rule_id}  a rule of the key's tenant (id `{tenant}:{rule_id}`), validated first
    DELETE /v1/users/{user_id}  erase the user of the key's tenant: 200 once the job acknowledged it
    GET  /healthz      200 when Kafka answers, else 503
    GET  /metrics      Prometheus text
    GET  /openapi.json the schema
    GET  /demo, /static/track.js   the demo page and the tracking snippet (serving/demo_page.py)
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import orjson
from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel

from operators import ownership
from operators.catalogue import load_catalogue
from operators.events import MAX_USER_ID_BYTES, Event
from operators.rules import validate_rule
from segstream.config import PROJECT_ROOT, Settings
from segstream.produce import erase_command
from serving.demo_page import add_demo_routes
from serving.front import Front, KafkaUnavailable
from serving.keys import KeyEntry, KeyStore
from serving.validation import Refused, build_event, decode_batch, event_of

MAX_BATCH = 100
# A rule id in the path. No ":": a tenant's rule is published as `{tenant}:{rule_id}`, so no tenant's
# rule can take the id of another tenant's rule or of a rule for every tenant.
RULE_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")

Endpoint = Callable[[Request], Awaitable[Response]]

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


class BatchResult(BaseModel):
    """One event of a batch: status 200 with its receipt, or 202 (durable, not evaluated in time)."""

    event_id: str
    status: int
    receipt: Receipt | None = None


class BatchAnswer(BaseModel):
    results: list[BatchResult]


class RuleRequest(BaseModel):
    """A rule (operators/rules.py); `tenant` only from an admin key (omitted: every tenant)."""

    description: str
    when: str
    tenant: str | None = None


class RulePublished(BaseModel):
    rule_id: str
    status: str


class History(BaseModel):
    events: list[dict[str, Any]]


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
        # The labelled children, looked up once: labels() costs a lock and a dict per call.
        self._by_status: dict[int, Any] = {}

    def status(self, code: int) -> Any:
        """The request counter of an HTTP status."""
        child = self._by_status.get(code)
        if child is None:
            child = self._by_status[code] = self.requests.labels(str(code))
        return child


def _taken_if_answered(acked: asyncio.Future[None], answer: asyncio.Future[bytes]) -> None:
    """An evaluation is back, so the job read the event from Kafka: stop waiting for the
    acknowledgement (on a busy machine it can come after the answer, or after the deadline)."""
    if not answer.cancelled() and not acked.done():
        acked.set_result(None)


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
    # Rule records and erase commands are signed (docs/security.md, "Rule ownership"): fail at
    # start, not at the first request, without a key.
    signing_keys = ownership.signing_keys(settings.ownership, PROJECT_ROOT)

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

    async def answers(events: list[Event], values: list[bytes], started: float) -> list[bytes | None]:
        """Produce the events and wait for their evaluations until the deadline (None: not back in
        time). KafkaUnavailable (with .acked: the event_ids Kafka did take) if any is not taken.
        An event whose evaluation is back counts as taken even if its acknowledgement is not (yet):
        the job read it from Kafka. Plain awaits under one timeout: no task per event (hot path)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline - (time.monotonic() - started)
        waiting = [front.expect(e.event_id) for e in events]
        acks: list[asyncio.Future[None]] = []
        failure: BaseException | None = None
        try:
            for e, v, w in zip(events, values, waiting, strict=True):
                acked = front.submit_event(e.user_id, v, e.ts)
                w.add_done_callback(partial(_taken_if_answered, acked))
                acks.append(acked)
        except KafkaUnavailable as exc:
            failure = exc
        try:
            async with asyncio.timeout_at(until):
                for acked in acks:  # every one settled (or the deadline), so that .acked is exact
                    try:
                        await acked
                    except KafkaUnavailable:
                        pass
        except TimeoutError:
            pass
        taken = [(a.done() and not a.cancelled() and a.exception() is None) or (w.done() and not w.cancelled())
                 for a, w in zip(acks, waiting, strict=False)]
        if failure is not None or not all(taken):
            for e, w in zip(events, waiting, strict=True):
                front.forget(e.event_id, w)
            for a in acks:
                a.cancel()  # (no-op for the settled ones)
            if failure is None:
                refused = next((a for a, t in zip(acks, taken, strict=True) if not t and a.done()
                                and not a.cancelled()), None)
                failure = refused.exception() if refused is not None else KafkaUnavailable(
                    f"no acknowledgement from Kafka within {deadline * 1000:.0f} ms")
            raise KafkaUnavailable(str(failure), acked=[e.event_id for e, t in zip(events, taken, strict=False) if t])
        try:
            async with asyncio.timeout_at(until):
                for w in waiting:
                    await w
        except TimeoutError:
            pass
        results: list[bytes | None] = []
        for e, w in zip(events, waiting, strict=True):
            if w.done() and not w.cancelled():
                results.append(w.result())
            else:
                front.forget(e.event_id, w)
                results.append(None)
        return results

    def served_plain(path: str, **documented: Any) -> Callable[[Endpoint], Endpoint]:
        """Serve the endpoint through a plain Starlette route, registered ahead of the FastAPI route
        that documents it in /openapi.json (same function, same answers). The endpoint takes the
        Request and returns a Response itself, so FastAPI's per-request machinery (dependency
        solving, exit stacks, telemetry) has nothing to do: it cost ~35 µs of CPU a request, a
        tenth of the front's (docs/benchmarks.md, "The tracking front")."""

        def register(endpoint: Endpoint) -> Endpoint:
            app.add_route(path, endpoint, methods=["POST"], include_in_schema=False)
            return app.post(path, **documented)(endpoint)
        return register

    @served_plain("/v1/track", responses={
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
            event, value = event_of(raw_body, entry.tenant, max_future_skew_ms=settings.events.max_future_skew_ms)
        except Refused as refused:
            metrics.status(refused.status).inc()
            return _problem(refused.status, refused.reason)
        try:
            [evaluation] = await answers([event], [value], started)
        except KafkaUnavailable as exc:
            metrics.status(503).inc()
            return _problem(503, f"Kafka did not take the event: {exc}")
        metrics.latency.observe(time.monotonic() - started)
        if evaluation is None:
            metrics.status(202).inc()
            metrics.accepted_late.inc()
            return JSONResponse({"event_id": event.event_id, "status": "accepted"}, status_code=202)
        metrics.status(200).inc()
        metrics.answered.inc()
        return Response(orjson.dumps(receipt_of(orjson.loads(evaluation))), media_type="application/json")

    @served_plain("/v1/track/batch", responses={
        200: {"model": BatchAnswer}, 202: {"model": BatchAnswer}, 400: {"model": Problem}, 401: {"model": Problem},
        403: {"model": Problem}, 413: {"model": Problem}, 503: {"model": Problem}},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "array", "maxItems": MAX_BATCH, "items": TrackRequest.model_json_schema()}}}}})
    async def track_batch(request: Request) -> Response:
        """Track up to 100 events (a JSON array). All are checked first: one invalid event is a 400
        naming its index, and nothing is produced. Results come in the order of the events: 200 when
        every evaluation is back within the deadline, else 202 (the results say which are)."""
        started = time.monotonic()
        try:
            entry = tenant_of(request)
            raw_body = await _read_body(request, serving.max_body_bytes)
            bodies = decode_batch(raw_body, MAX_BATCH)
            built = []
            for i, body in enumerate(bodies):
                try:
                    built.append(build_event(body, entry.tenant,
                                             max_future_skew_ms=settings.events.max_future_skew_ms))
                except Refused as refused:
                    raise Refused(refused.status, f"event {i}: {refused.reason}") from None
            ids = [event.event_id for event, _ in built]
            if len(set(ids)) != len(ids):
                raise Refused(400, "the batch repeats an event_id")
        except Refused as refused:
            metrics.status(refused.status).inc()
            return _problem(refused.status, refused.reason)
        try:
            evaluations = await answers([e for e, _ in built], [v for _, v in built], started)
        except KafkaUnavailable as exc:
            metrics.status(503).inc()
            return JSONResponse({"error": f"Kafka did not take every event: {exc}",
                                 "accepted": exc.acked}, status_code=503)
        results: list[dict[str, Any]] = []
        for event_id, evaluation in zip(ids, evaluations, strict=True):
            if evaluation is None:
                results.append({"event_id": event_id, "status": 202})
            else:
                results.append({"event_id": event_id, "status": 200,
                                "receipt": receipt_of(orjson.loads(evaluation))})
        status = 200 if all(r["status"] == 200 for r in results) else 202
        metrics.status(status).inc()
        (metrics.answered if status == 200 else metrics.accepted_late).inc()
        metrics.latency.observe(time.monotonic() - started)
        return Response(orjson.dumps({"results": results}), status_code=status, media_type="application/json")

    def user_of(user_id: str) -> str:
        if not user_id or len(user_id.encode("utf-8", "surrogatepass")) > MAX_USER_ID_BYTES:
            raise Refused(400, f"user_id must be 1 to {MAX_USER_ID_BYTES} bytes")
        return user_id

    async def bigtable_read(request: Request, user_id: str, read: Any) -> Response:
        from sinks.bigtable import BigtableUnavailable

        try:
            entry = tenant_of(request)
            user = user_of(user_id)
        except Refused as refused:
            return _problem(refused.status, refused.reason)
        try:
            found = await asyncio.to_thread(read, settings.bigtable, entry.tenant, user)
        except BigtableUnavailable as exc:
            return _problem(503, str(exc))
        if found is None:
            return _problem(404, f"no profile for user {user!r}")
        return Response(orjson.dumps(found), media_type="application/json")

    @app.get("/v1/users/{user_id}/profile", responses={
        401: {"model": Problem}, 404: {"model": Problem}, 503: {"model": Problem}})
    async def profile(request: Request, user_id: str) -> Response:
        """The user's latest profile in the key's tenant, from Bigtable. Not read-your-writes: the
        Bigtable sink flushes asynchronously, so it can be older than a receipt just returned."""
        from sinks.bigtable.reader import read_profile

        return await bigtable_read(request, user_id, read_profile)

    @app.get("/v1/users/{user_id}/events", response_model=History, responses={
        401: {"model": Problem}, 503: {"model": Problem}})
    async def history(request: Request, user_id: str, limit: int = Query(20, ge=1, le=1000),
                      since: int | None = Query(None, ge=0, description="only events at or after this epoch ms")
                      ) -> Response:
        """The user's events in the key's tenant, newest first, from Bigtable. Not read-your-writes."""
        from sinks.bigtable.reader import read_history

        def read(config: Any, tenant: str, user: str) -> dict[str, Any]:
            return {"events": read_history(config, tenant, user, limit=limit, since_ts=since)}

        return await bigtable_read(request, user_id, read)

    catalogue = load_catalogue(settings.path(settings.stats_file))

    def published_id(entry: KeyEntry, rule_id: str) -> str:
        if not RULE_ID.fullmatch(rule_id):
            raise Refused(400, "rule id must be 1 to 100 of A-Z a-z 0-9 _ . -")
        return rule_id if entry.admin else f"{entry.tenant}:{rule_id}"

    async def publish(entry: KeyEntry, rule_id: str, value: bytes | None) -> Response:
        # Signed for the key's tenant (an admin key: for an operator, who may publish any rule).
        owner = "" if entry.admin else entry.tenant
        signature = ownership.sign(signing_keys, ownership.RULE, rule_id.encode("utf-8"), owner, value)
        try:
            await front.send(settings.kafka.topics.rules, rule_id, value, deadline,
                             headers=[(ownership.HEADER, signature)])
        except KafkaUnavailable as exc:
            return _problem(503, f"Kafka did not take the rule: {exc}")
        return JSONResponse({"rule_id": rule_id, "status": "published" if value else "deleted"}, status_code=202)

    @app.put("/v1/rules/{rule_id}", status_code=202, responses={
        202: {"model": RulePublished}, 400: {"model": Problem}, 401: {"model": Problem}, 403: {"model": Problem},
        503: {"model": Problem}}, openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": RuleRequest.model_json_schema()}}}})
    async def put_rule(request: Request, rule_id: str) -> Response:
        """Publish a rule to the rules topic, checked first as the job checks it (400 with the reason).
        A tenant's key publishes `{tenant}:{rule_id}` for its own tenant only; an admin key publishes
        `rule_id` for the body's `tenant`, or for every tenant without one. 202: the job applies it
        when it reads the rules topic (evaluations then carry a higher rules_version)."""
        try:
            entry = tenant_of(request)
            full_id = published_id(entry, rule_id)
            raw = await _read_body(request, serving.max_body_bytes)
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise Refused(400, f"not UTF-8 JSON: {exc}") from None
            if not isinstance(data, dict):
                raise Refused(400, "a rule is a JSON object")
            if "id" in data:
                raise Refused(400, "the rule id is the path's, not the body's")
            if not entry.admin:
                if data.get("tenant", entry.tenant) != entry.tenant:
                    raise Refused(403, "a tenant key publishes rules for its own tenant only")
                data["tenant"] = entry.tenant
            rule = {"id": full_id, **data}
            reason = validate_rule(rule, catalogue, settings.rule_limits)
            if reason is not None:
                raise Refused(400, reason)
        except Refused as refused:
            return _problem(refused.status, refused.reason)
        return await publish(entry, full_id, orjson.dumps(rule))

    @app.delete("/v1/rules/{rule_id}", status_code=202, responses={
        202: {"model": RulePublished}, 400: {"model": Problem}, 401: {"model": Problem}, 503: {"model": Problem}})
    async def delete_rule(request: Request, rule_id: str) -> Response:
        """Delete a rule (a tombstone on the rules topic): a tenant's key deletes its own
        `{tenant}:{rule_id}` only, an admin key any rule id."""
        try:
            entry = tenant_of(request)
            full_id = published_id(entry, rule_id)
        except Refused as refused:
            return _problem(refused.status, refused.reason)
        return await publish(entry, full_id, None)

    @app.delete("/v1/users/{user_id}", responses={
        200: {"description": "erased: the job's acknowledgement"}, 202: {"description": "not acknowledged yet"},
        400: {"model": Problem}, 401: {"model": Problem}, 503: {"model": Problem}})
    async def erase_user(request: Request, user_id: str) -> Response:
        """Erase a user of the key's tenant (docs/security.md, "Erasure"): a signed erase command on
        the user's partition of the events topic, after the user's earlier events. 200 with the job's
        acknowledgement once the user's keyed state is gone (the Bigtable rows follow in order, see
        docs/serving.md); 202 with the erasure_id if it is not back within serving.erase_deadline_ms."""
        try:
            entry = tenant_of(request)
            user = user_of(user_id)
        except Refused as refused:
            return _problem(refused.status, refused.reason)
        erasure_id = f"erase-{uuid.uuid4().hex}"
        command = erase_command(signing_keys, entry.tenant, user, erasure_id, owner=entry.tenant)
        answer = front.expect(erasure_id)
        try:
            await front.send(front.events_topic, user, command.value, deadline, timestamp=command.timestamp or 0,
                             headers=[*front.reply_headers, *command.headers])
            async with asyncio.timeout(serving.erase_deadline_ms / 1000):
                acknowledgement = await answer
        except KafkaUnavailable as exc:
            front.forget(erasure_id, answer)
            return _problem(503, f"Kafka did not take the erase command: {exc}")
        except TimeoutError:
            front.forget(erasure_id, answer)
            return JSONResponse({"erasure_id": erasure_id, "status": "pending"}, status_code=202)
        return Response(acknowledgement, media_type="application/json")

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

    add_demo_routes(app)
    return app
