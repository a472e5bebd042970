"""`segstream serve`: the front on uvicorn. Each worker process is an instance of its own (its own
reply topic), so any number of workers and hosts can run side by side."""

from __future__ import annotations

from fastapi import FastAPI

from segstream.config import load_settings


def app_factory() -> FastAPI:
    """The app of the configuration in effect (SEGSTREAM_CONFIG, SEGSTREAM_*): uvicorn calls this in
    every worker process."""
    from serving.app import create_app

    return create_app(load_settings())


def serve(host: str, port: int, workers: int, log_level: str = "info") -> None:
    import uvicorn

    uvicorn.run("serving.server:app_factory", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=False)
