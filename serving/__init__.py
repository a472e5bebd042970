"""The tracking front: HTTP in, events to Kafka, each request answered with its own evaluation.

`serving.app.create_app(settings)` builds the ASGI app (FastAPI); `segstream serve` runs it on
uvicorn. docs/serving.md describes the API, the reply routing and the guarantees.
"""
