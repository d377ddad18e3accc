# syntax=docker/dockerfile:1
# vitalflow's container image: one image for every subcommand (`run`, `api`, `seed`,
# `simulate`, `dlq replay`, `demo`); the orchestrator picks the subcommand as arguments.
#   docker build -t vitalflow:0.1.0 .
#   docker run --rm vitalflow:0.1.0 run --help
# Used by deploy/compose/compose.yaml and deploy/kubernetes/; checked statically by
# tests/unit/test_deploy_manifests.py.

# A patch-level tag so a rebuild gets the same interpreter; bump it deliberately.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# A virtualenv is copied whole into the runtime stage: no pip caches or sources end up in
# the final image. No compiler is installed: on linux/amd64 every pinned dependency ships a
# manylinux wheel (glibc <= 2.34; bookworm has 2.36). Another platform may need one here.
RUN python -m venv /opt/vitalflow
WORKDIR /src
# README.md is the package's long description, so the build needs it.
COPY pyproject.toml constraints.txt README.md ./
COPY flows ./flows
COPY connectors ./connectors
COPY sinks ./sinks
COPY api ./api
# The pinned versions the test suite ran with; no dev extras in a runtime image.
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/vitalflow/bin/pip install -c constraints.txt . \
    && /opt/vitalflow/bin/vitalflow --help >/dev/null

FROM ${PYTHON_IMAGE}
# tini as PID 1 forwards the stop signal to vitalflow and reaps children; without it the
# Python process would be PID 1, which the kernel shields from signals it has no handler
# for, and `docker stop` would end in SIGKILL after the grace period.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid/gid so Kubernetes can verify runAsNonRoot and fsGroup can match it.
RUN groupadd --system --gid 10001 vitalflow \
    && useradd --system --uid 10001 --gid vitalflow --home-dir /var/lib/vitalflow \
        --no-create-home --shell /usr/sbin/nologin vitalflow \
    && install -d -o vitalflow -g vitalflow -m 0750 /var/lib/vitalflow \
        /var/lib/vitalflow/recovery
COPY --from=build /opt/vitalflow /opt/vitalflow

ENV PATH=/opt/vitalflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VITALFLOW_RECOVERY_DIR=/var/lib/vitalflow/recovery \
    VITALFLOW_API_HOST=0.0.0.0
# Bytewax's recovery store (SQLite files) must outlive the container: the de-duplication
# state and the epoch the MQTT acks depend on live there. Mount a volume here.
VOLUME ["/var/lib/vitalflow"]
WORKDIR /var/lib/vitalflow
USER 10001:10001
EXPOSE 8000
# `vitalflow run` stops cleanly on SIGINT (KeyboardInterrupt: un-acked messages are
# redelivered on the next start); uvicorn (`vitalflow api`) treats SIGINT like SIGTERM.
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/bin/tini", "--", "vitalflow"]
CMD ["--help"]
