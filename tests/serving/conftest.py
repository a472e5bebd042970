"""Fronts for the serving tests: an app over a Settings, run in-process with Starlette's TestClient
(which runs the lifespan: the front's producer and reply consumer)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from segstream.config import Settings
from serving.app import create_app
from serving.keys import KeyStore


def with_serving(settings: Settings, **serving: object) -> Settings:
    return settings.model_copy(update={"serving": settings.serving.model_copy(update=serving)})


@contextmanager
def front(settings: Settings, keys: KeyStore, instance: str, **serving: object) -> Iterator[TestClient]:
    app = create_app(with_serving(settings, instance_id=instance, **serving), keys)
    with TestClient(app, raise_server_exceptions=True) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "tenants.json")
