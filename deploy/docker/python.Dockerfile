# syntax=docker/dockerfile:1.7
# Every Python image of Shopmesh, one build target each (context: the repo root, trimmed by
# .dockerignore). docker-compose.yml (generated from schemas/topology.yaml) passes the args:
#   service    a service of the manifest: SERVICE=<name>, GRPC_PORT and METRICS_PORT its
#              ports (`docker compose build <name>` passes them; by hand:
#              docker build -f deploy/docker/python.Dockerfile --target service \
#                --build-arg SERVICE=<name> --build-arg GRPC_PORT=<port> ... .)
#   registry   the schema registry (REST API and /metrics on REGISTRY_PORT, stored in
#              PostgreSQL), with schemas/avro
#   smtp-sink  the mail catcher (stack/smtp_sink.py: SMTP on SMTP_PORT, HTTP API on HTTP_PORT)
# The ports are the programs' defaults already (gen/python/shop/topology.py); the args say
# which ports an image exposes and its HEALTHCHECK asks. A HEALTHCHECK takes no build-arg
# substitution, so it reads the port from the environment in shell form (DL3025 ignored).

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- deps: the one lock, installed into a venv that every runtime stage copies whole.
FROM ${PYTHON_IMAGE} AS deps
WORKDIR /build
COPY requirements.lock .
# Runtime dependencies only: the stack's Envoy wheel is a dev extra (Envoy has its own image).
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps --only-binary=:all: -r requirements.lock

# ---- base: no compiler, no pip cache, no build files; an unprivileged user.
FROM ${PYTHON_IMAGE} AS base
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/gen/python \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SHOPMESH_ENV=prod
RUN groupadd --system --gid 10001 shop \
 && useradd --system --uid 10001 --gid shop --no-create-home --shell /usr/sbin/nologin shop
WORKDIR /app
COPY --from=deps /opt/venv /opt/venv
COPY deploy/probe.py deploy/probe.py

# ---- service: services/<SERVICE> on the runtime (the deployment sets <NAME>_HOST=0.0.0.0).
FROM base AS service
ARG SERVICE
ARG GRPC_PORT
ARG METRICS_PORT
ENV IMAGE_SERVICE=${SERVICE} \
    IMAGE_GRPC_PORT=${GRPC_PORT}
COPY gen/python gen/python
COPY services/runtime services/runtime
COPY services/${SERVICE} services/${SERVICE}
USER 10001:10001
EXPOSE ${GRPC_PORT} ${METRICS_PORT}
# hadolint ignore=DL3025
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
  CMD python deploy/probe.py grpc "$IMAGE_GRPC_PORT"
CMD ["sh", "-c", "exec python -m \"services.${IMAGE_SERVICE}.main\""]

# ---- registry: on start it serves; `python -m registry register` (compose's registry-init,
# the Kubernetes Job) loads schemas/avro, which the image carries.
FROM base AS registry
ARG REGISTRY_PORT
ENV REGISTRY_HOST=0.0.0.0 \
    REGISTRY_PORT=${REGISTRY_PORT} \
    REGISTRY_SCHEMAS_DIR=/app/schemas/avro
COPY gen/python/shop/topology.py gen/python/shop/topology.py
COPY registry registry
COPY schemas/avro schemas/avro
USER 10001:10001
EXPOSE ${REGISTRY_PORT}
# hadolint ignore=DL3025
HEALTHCHECK --interval=10s --timeout=4s --start-period=15s --retries=3 \
  CMD python deploy/probe.py http "http://127.0.0.1:$REGISTRY_PORT/"
CMD ["python", "-m", "registry", "serve"]

# ---- smtp-sink: the local stack's mail catcher, chosen for every environment
# (docs/architecture.md: a third of Mailpit's CPU per message). Messages in /mail.
FROM base AS smtp-sink
ARG SMTP_PORT
ARG HTTP_PORT
ENV IMAGE_HTTP_PORT=${HTTP_PORT}
COPY gen/python/shop/topology.py gen/python/shop/topology.py
COPY stack/__init__.py stack/__init__.py
COPY stack/smtp_sink.py stack/smtp_sink.py
USER 10001:10001
EXPOSE ${SMTP_PORT} ${HTTP_PORT}
# hadolint ignore=DL3025
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=20 \
  CMD python deploy/probe.py http "http://127.0.0.1:$IMAGE_HTTP_PORT/health"
CMD ["python", "-m", "stack.smtp_sink", "--dir", "/mail", "--host", "0.0.0.0"]
