# syntax=docker/dockerfile:1
# The tracking front (serving/, `segstream serve`: docs/serving.md): the official Python 3.11 image,
# segstream without PyFlink (docker/front-requirements.txt), as a non-root user. Build from the
# repository root:
#
#   docker build -f docker/front.Dockerfile -t segstream-front:0.1.0 .
#
# The base is pinned by tag; pin it by digest too in production (a tag can be re-pushed).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- 1. a virtualenv with the front's dependencies and segstream -----------------------------------
FROM ${PYTHON_IMAGE} AS build
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /opt/segstream
COPY docker/front-requirements.txt docker/constraints.txt ./docker/
RUN pip install --no-cache-dir -r docker/front-requirements.txt -c docker/constraints.txt
COPY pyproject.toml README.md ./
COPY conf/ conf/
COPY operators/ operators/
COPY segstream/ segstream/
COPY serving/ serving/
COPY sinks/ sinks/
COPY jobs/ jobs/
# --no-deps: PyFlink stays out (the front never imports it). Editable: segstream resolves conf/ and
# relative configured paths against /opt/segstream.
RUN pip install --no-cache-dir --no-deps -e . && rm -rf /root/.cache

# --- 2. the image: the interpreter, the venv and the sources; nothing else --------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 segstream \
    && useradd --system --uid 10001 --gid segstream --home-dir /opt/segstream segstream \
    && mkdir -p /var/lib/segstream && chown segstream:segstream /var/lib/segstream
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=segstream:segstream /opt/segstream /opt/segstream
WORKDIR /opt/segstream
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SEGSTREAM_CONFIG=/opt/segstream/conf/segstream.yaml \
    SEGSTREAM_SERVING__HOST=0.0.0.0 \
    SEGSTREAM_SERVING__PORT=18080 \
    SEGSTREAM_SERVING__KEYS_FILE=/var/lib/segstream/tenants.json
USER segstream
EXPOSE 18080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:18080/healthz', timeout=2)"]
CMD ["segstream", "serve"]
