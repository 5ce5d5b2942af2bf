"""The services the mesh routes to, read from the topology manifest (schemas/topology.yaml).

A proto package `shop.<name>.v1` belongs to the service `<name>` there. Adding a service is
one manifest entry (plus its schema); adding an RPC needs nothing (routes come from the
schema).
"""

from __future__ import annotations

from collections.abc import Mapping

from topology import topology

# name -> local gRPC port. The env var <NAME>_GRPC_PORT is the service's own override; the
# mesh output is generated for these defaults.
SERVICES: Mapping[str, int] = {s.name: s.port for s in topology().services}

# Kubernetes namespace of the workloads (their Services expose the same ports as above).
K8S_NAMESPACE = topology().namespace


def metrics_port(name: str) -> int:
    """A service's Prometheus /metrics port (the manifest's; the stack sets
    <NAME>_METRICS_PORT to it, compose and Kubernetes scrape it)."""
    return topology().service(name).metrics_port


def calls(name: str) -> tuple[str, ...]:
    """The services `name` calls, as the manifest declares."""
    return topology().service(name).calls
