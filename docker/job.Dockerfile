# syntax=docker/dockerfile:1
# The job image: the official Apache Flink image of the version PyFlink is pinned to (pyproject.toml
# apache-flink==2.3.0, jvm/pom.xml flink.version), with Python 3.11, PyFlink, segstream and its job
# jar, the way Flink's docs build PyFlink images ("Using Flink Python on Docker": install Python and
# apache-flink into the flink image). One image for the JobManager, the TaskManagers, the
# `flink run -py` client (docker/compose.yaml) and the Kubernetes operator's application mode
# (docker/k8s/). Build from the repository root:
#
#   docker build -f docker/job.Dockerfile -t segstream-job:0.1.0 .
#
# Bases are pinned by tag; pin them by digest too in production (`docker buildx imagetools inspect
# flink:2.3.0-scala_2.12-java17` prints it): a tag can be re-pushed, a digest cannot.

ARG FLINK_IMAGE=flink:2.3.0-scala_2.12-java17
ARG MAVEN_IMAGE=maven:3.9.11-eclipse-temurin-17

# --- 1. the job jar, with the project's own Maven build (versions pinned in jvm/pom.xml) -------------
FROM ${MAVEN_IMAGE} AS jar
WORKDIR /build
COPY jvm/ jvm/
# -pl job -am: the engine and the job jar only (not the local stack's broker runtime). The tests ran
# in CI already; the image only packages.
RUN --mount=type=cache,target=/root/.m2 \
    mvn -B -q -f jvm/pom.xml -pl job -am -DskipTests -Dsegstream.out=/build/out package

# --- 2. Python 3.11 built on the Flink image itself (its Ubuntu ships 3.12; PyFlink 2.3 and the
#        project's pins are for 3.11), then PyFlink, the dependencies and segstream ---------------
FROM ${FLINK_IMAGE} AS python
USER root
ARG PYTHON_VERSION=3.11.14
# Pablo Galindo Salgado, release manager of Python 3.10 and 3.11 (https://www.python.org/downloads/).
ARG PYTHON_GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends gcc make libc6-dev dpkg-dev gnupg wget xz-utils ca-certificates \
      libssl-dev zlib1g-dev libbz2-dev libffi-dev liblzma-dev libsqlite3-dev uuid-dev; \
    rm -rf /var/lib/apt/lists/*
RUN set -eux; \
    cd /tmp; \
    wget -nv "https://www.python.org/ftp/python/${PYTHON_VERSION}/Python-${PYTHON_VERSION}.tar.xz"; \
    wget -nv "https://www.python.org/ftp/python/${PYTHON_VERSION}/Python-${PYTHON_VERSION}.tar.xz.asc"; \
    export GNUPGHOME="$(mktemp -d)"; \
    for server in hkps://keyserver.ubuntu.com hkps://keys.openpgp.org hkp://keyserver.ubuntu.com:80; do \
      gpg --batch --keyserver "$server" --recv-keys "$PYTHON_GPG_KEY" && break || :; \
    done; \
    gpg --batch --verify "Python-${PYTHON_VERSION}.tar.xz.asc" "Python-${PYTHON_VERSION}.tar.xz"; \
    gpgconf --kill all; rm -rf "$GNUPGHOME"; \
    tar -xf "Python-${PYTHON_VERSION}.tar.xz"; \
    cd "Python-${PYTHON_VERSION}"; \
    # --enable-shared: PyFlink's pemja embeds this interpreter in the JVM; the rpath finds libpython.
    ./configure --prefix=/opt/python --enable-shared --with-ensurepip=install LDFLAGS="-Wl,-rpath,/opt/python/lib"; \
    make -j"$(nproc)"; \
    make install; \
    cd /; rm -rf /tmp/Python-*; \
    find /opt/python -depth -type d \( -name test -o -name tests -o -name idle_test -o -name __pycache__ \) -exec rm -rf '{}' +; \
    ln -s python3 /opt/python/bin/python; \
    /opt/python/bin/python3 -c 'import ssl, sqlite3, lzma, bz2, ctypes, zlib'
ENV PATH=/opt/python/bin:$PATH
WORKDIR /opt/segstream
# The dependencies first (a layer that survives source changes), at the tested versions.
COPY pyproject.toml docker/constraints.txt ./
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt \
    && python3 -m pip install --no-cache-dir -r /tmp/requirements.txt -c constraints.txt \
    # PyFlink finds Flink through FLINK_HOME (=/opt/flink, set by the base image; pyflink/find_flink_home.py
    # trusts it), so the wheel's own copy of Flink's jars (~330 MB) is never read here.
    && site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
    && rm -rf "$site/pyflink/lib" "$site/pyflink/opt" "$site/pyflink/plugins"
COPY README.md ./
COPY conf/ conf/
COPY jobs/ jobs/
COPY operators/ operators/
COPY segstream/ segstream/
COPY serving/ serving/
COPY sinks/ sinks/
COPY docker/submit-job.sh docker/
# Editable: segstream resolves conf/ and every relative configured path against /opt/segstream.
RUN python3 -m pip install --no-cache-dir --no-deps -e . && rm -rf /root/.cache

# --- 3. the image: Flink + the interpreter + segstream; no compiler, no Maven ------------------------
FROM ${FLINK_IMAGE}
USER root
# The shared libraries the interpreter was built against (their -dev packages stay in stage 2).
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends libssl3t64 zlib1g libbz2-1.0 libffi8 liblzma5 libsqlite3-0 libuuid1; \
    rm -rf /var/lib/apt/lists/*; \
    # checkpoints, savepoints and HA metadata: a volume in compose, a shared volume on Kubernetes
    mkdir -p /flink-data/checkpoints /flink-data/savepoints /flink-data/ha; \
    chown -R flink:flink /flink-data
COPY --from=python /opt/python /opt/python
COPY --from=python --chown=flink:flink /opt/segstream /opt/segstream
COPY --from=jar --chown=flink:flink /build/out/segstream-job.jar /opt/segstream/lib/segstream-job.jar
ENV PATH=/opt/python/bin:$PATH \
    PYTHONPATH=/opt/segstream \
    SEGSTREAM_CONFIG=/opt/segstream/conf/segstream.yaml \
    SEGSTREAM_FLINK__JOB_JAR=/opt/segstream/lib/segstream-job.jar \
    SEGSTREAM_FLINK__CHECKPOINT_DIR=/flink-data/checkpoints
USER flink
# The base image's entrypoint and command: `jobmanager`, `taskmanager`, or any command (`flink run ...`).
