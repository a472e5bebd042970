"""`segstream serve`: the front on uvicorn. Each worker process is an instance of its own (its own
reply topic), so any number of workers and hosts can run side by side."""

from __future__ import annotations

import os

from fastapi import FastAPI

from segstream.config import load_settings

# Set by serve() for its worker processes: how many there are.
WORKERS_ENV = "SEGSTREAM_SERVE_WORKERS"


def app_factory() -> FastAPI:
    """The app of the configuration in effect (SEGSTREAM_CONFIG, SEGSTREAM_*): uvicorn calls this in
    every worker process. With several workers a configured serving.instance_id gets the worker's
    pid appended: every worker must read a reply topic of its own."""
    from serving.app import create_app

    settings = load_settings()
    serving = settings.serving
    if int(os.environ.get(WORKERS_ENV, "1")) > 1 and serving.instance_id:
        settings = settings.model_copy(update={"serving": serving.model_copy(
            update={"instance_id": f"{serving.instance_id}-{os.getpid()}"})})
    return create_app(settings)


def serve(host: str, port: int, workers: int, log_level: str = "info") -> None:
    import uvicorn

    os.environ[WORKERS_ENV] = str(workers)
    # uvloop and httptools, not uvicorn's fallbacks (asyncio's loop, pure-Python h11): they halve
    # the front's CPU per request (docs/benchmarks.md, "The tracking front").
    uvicorn.run("serving.server:app_factory", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=False, loop="uvloop", http="httptools")
