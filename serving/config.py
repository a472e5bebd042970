"""The `serving:` section of the configuration (owned here, composed into segstream.config.Settings)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field


class ServingConfig(BaseModel):
    host: str = "127.0.0.1"
    port: int = 18080
    # How long POST /v1/track waits for the event's evaluation before answering 202. It also bounds
    # the wait for Kafka's acknowledgement: an event Kafka has not confirmed by then is a 503.
    deadline_ms: Annotated[int, Field(ge=1, le=60_000)] = 250
    # How long DELETE /v1/users/{id} waits for the job to acknowledge the erasure before answering 202.
    erase_deadline_ms: Annotated[int, Field(ge=1, le=600_000)] = 10_000
    # Larger request bodies are refused (413) before they are read in full. One event is at most
    # 64 KiB by the contract (operators/events.py MAX_RECORD_BYTES).
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    # Each front instance (each `serve` worker process) reads its answers from a topic of its own,
    # `{reply_topic_prefix}{instance id}`, created at start if missing and kept at stop. The job
    # writes replies only to existing topics with this prefix (jvm/job ReplySink).
    reply_topic_prefix: str = "segstream-reply-"
    reply_topic_partitions: int = 1
    # retention.ms of a reply topic: answers are read within the deadline, so an hour is plenty; it
    # also bounds what the topic of an instance that is gone holds.
    reply_retention_ms: int = 3_600_000
    # The instance id; None: `{hostname}-{pid}` (unique per worker process, so a new topic per start:
    # in production set a stable id per instance, e.g. the pod name).
    instance_id: str | None = None
    # The tenant keys: sha256 of each key with its tenant (`segstream tenant add|list|revoke`).
    # Relative paths are under the project root, like every configured path.
    keys_file: str = ".segstream/tenants.json"
    # Extra Kafka client properties for the front's producer and consumer (security...).
    kafka_properties: dict[str, str] = {}
    # Properties for the producer only, over the front's defaults (linger.ms 1, serving/front.py);
    # acks, idempotence and message.timeout.ms (= deadline_ms) stay as they are.
    producer_properties: dict[str, str] = {}
