"""Demo data in the deployments, as `make up` loads it locally: for each service whose
manifest entry names a `demo` module (products, demo accounts, the first currency rates),
a one-shot run of that module in the service's own image, with the service's environment.

- docker-compose: `<service>-demo`, started once the service is healthy (its migrations
  have run), exits when done; the loaders are idempotent, so `docker compose up` again is
  harmless.
- Kubernetes: Jobs in the dev overlay only (the demo accounts have well-known passwords;
  a production cluster loads its own catalog and rates). Their pods are labelled apart from
  the service's (`<service>-demo`), so the service's Service, PDB and policies never select
  them; one NetworkPolicy lets them reach the PostgreSQL primary and nothing else.
"""

from __future__ import annotations

from typing import Any

from topology.compose_infra import POSTGRES
from topology.k8s_service import COMPONENT, NAME
from topology.manifest import Service, Topology

DEMO = "demo-data"


def _not_for_loaders(s: Service) -> set[str]:
    return {"SHOPMESH_ENV", "SHOPMESH_JWT_ISSUER", "SHOPMESH_JWT_AUDIENCE", s.env("IDENTITY_KEY")}


def demo_services(t: Topology) -> list[Service]:
    """The services with a demo loader, in manifest order."""
    return [s for s in t.services if s.demo]


def compose_services(t: Topology, service: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """docker-compose entries `<name>-demo`, built from each service's own entry."""
    out: dict[str, Any] = {}
    for s in demo_services(t):
        base = service[s.name]
        out[f"{s.name}-demo"] = {
            "image": base["image"],
            "restart": "no",
            "networks": base["networks"],
            "command": ["python", "-m", s.demo],
            "environment": base["environment"],
            "depends_on": {s.name: {"condition": "service_healthy"}},
        }
    return out


def k8s_jobs(t: Topology, env_of: Any, security: dict[str, Any], uid: int) -> list[dict]:
    """A Job per demo loader plus the policies its pods need (dev overlay)."""
    docs: list[dict[str, Any]] = []
    for s in demo_services(t):
        # What a loader needs of the service's environment: its stores, not its identity
        # or the token settings. The dev cluster's services run as prod; the loaders of demo
        # accounts refuse that.
        dropped = _not_for_loaders(s)
        env = [e for e in env_of(t, s) if e["name"] not in dropped]
        env.append({"name": "SHOPMESH_ENV", "value": "dev"})
        labels = {NAME: f"{s.name}-demo", COMPONENT: DEMO}
        docs.append(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": f"{s.name}-demo", "labels": labels},
                "spec": {
                    # Retries while the database or the migrations are not there yet.
                    "backoffLimit": 20,
                    "ttlSecondsAfterFinished": 3600,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": s.name,
                            "restartPolicy": "OnFailure",
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": uid,
                                "runAsGroup": uid,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [
                                {
                                    "name": "load",
                                    "image": f"shopmesh/{s.name}",
                                    "command": ["python", "-m", s.demo],
                                    "env": env,
                                    "resources": {
                                        "requests": {"cpu": "50m", "memory": "96Mi"},
                                        "limits": {"cpu": "500m", "memory": "256Mi"},
                                    },
                                    "securityContext": security,
                                }
                            ],
                        },
                    },
                },
            }
        )
    if not docs:
        return docs
    demo_pods = {"podSelector": {"matchLabels": {COMPONENT: DEMO}}}
    primary = {"podSelector": {"matchLabels": {NAME: "postgres-primary"}}}
    port = [{"port": POSTGRES, "protocol": "TCP"}]
    docs += [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": DEMO},
            "spec": {
                "podSelector": demo_pods["podSelector"],
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": [{"to": [primary], "ports": port}],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": f"postgres-from-{DEMO}"},
            "spec": {
                "podSelector": primary["podSelector"],
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [demo_pods], "ports": port}],
            },
        },
    ]
    return docs
