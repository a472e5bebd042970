"""The demo page's files are served as they are, only those, with the page's security headers (the
page itself in a browser: tests/integration/test_demo_page.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from segstream.config import Settings
from segstream.testing import free_port
from serving.demo_page import STATIC_DIR
from tests.serving.conftest import front, store


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    settings = Settings(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"})  # no broker needed
    with front(settings, store(tmp_path_factory.mktemp("keys")), "demo-page") as client:
        yield client


@pytest.mark.parametrize(("path", "file", "media_type"), [
    ("/demo", "demo.html", "text/html"),
    ("/static/track.js", "track.js", "text/javascript"),
    ("/static/demo.js", "demo.js", "text/javascript"),
    ("/static/demo.css", "demo.css", "text/css"),
])
def test_the_files_are_served_as_they_are(client, path: str, file: str, media_type: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.content == (STATIC_DIR / file).read_bytes()
    assert response.headers["content-type"].startswith(media_type)
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/static/demo.html", "/static/..%2Fapp.py", "/static/nothing.js", "/static/"])
def test_nothing_else_is_served(client, path: str) -> None:
    assert client.get(path).status_code == 404


def test_the_page_loads_nothing_from_elsewhere() -> None:
    """No CDN: every script and stylesheet of the page is one of the front's own files."""
    page = (STATIC_DIR / "demo.html").read_text()
    assert "//" not in page  # no absolute or protocol-relative URL
    for name in ("track.js", "demo.js", "demo.css"):
        assert f'"/static/{name}"' in page and Path(STATIC_DIR / name).exists()


def test_the_demo_routes_are_not_in_the_api_schema(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/demo" not in paths and not any(p.startswith("/static") for p in paths)
