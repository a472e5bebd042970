"""The demo page and the tracking snippet: static files from serving/static, served by the front.

    GET /demo                the demo shop (?key=sk_...&user=visitor-1 pre-fill its form)
    GET /static/track.js     the tracking snippet (segstream.init / track / pageView)
    GET /static/demo.js, /static/demo.css   the page's own logic and style

No build step and nothing from a CDN: the files are read once, when the app is made, and served
as they are. Only these names are served (no path is looked up on disk per request).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Response

STATIC_DIR = Path(__file__).parent / "static"
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".html": "text/html; charset=utf-8"}
# The page runs only its own scripts and talks only to its own origin (the front).
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
ASSETS = ("track.js", "demo.js", "demo.css")


def add_demo_routes(app: FastAPI) -> None:
    page = (STATIC_DIR / "demo.html").read_bytes()
    assets = {name: (STATIC_DIR / name).read_bytes() for name in ASSETS}

    @app.get("/demo", include_in_schema=False)
    async def demo() -> Response:
        return Response(page, media_type=MEDIA_TYPES[".html"], headers=PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in assets:
            return Response(b'{"error": "not found"}', status_code=404, media_type="application/json")
        return Response(assets[name], media_type=MEDIA_TYPES[Path(name).suffix], headers=PAGE_HEADERS)
