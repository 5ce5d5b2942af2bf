"""The one table of services the mesh routes to.

A proto package `shop.<name>.v1` belongs to the service `<name>` below. Adding a service is
one line here (plus its schema); adding an RPC needs nothing (routes come from the schema).
"""

from __future__ import annotations

from collections.abc import Mapping

# name -> local gRPC port (ARCHITECTURE §8). The env var <NAME>_GRPC_PORT is the service's
# own override; the mesh output is generated for these defaults.
SERVICES: Mapping[str, int] = {
    "product": 50051,
    "user": 50052,
    "order": 50053,
    "notification": 50054,
    "auth": 50055,
}

# Kubernetes namespace of the workloads (their Services expose the same ports as above).
K8S_NAMESPACE = "shop"


def metrics_port(name: str) -> int:
    """A service's Prometheus /metrics port: 9451.. beside gRPC 50051.. (same in the images,
    deploy/docker/*.Dockerfile). The stack sets <NAME>_METRICS_PORT to it."""
    return SERVICES[name] - 50051 + 9451
