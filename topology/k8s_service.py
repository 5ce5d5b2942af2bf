"""The Kubernetes objects of one manifest service (k8s/generated/services/<name>.yaml):
ServiceAccount, Deployment, Service, HPA, PDB and the NetworkPolicy that opens exactly its
manifest edges; and the pod selectors and policy shapes the shared parts' policies (k8s.py)
use too.
"""

from __future__ import annotations

from typing import Any

from topology import compose
from topology.compose_infra import KAFKA, MONGO, POSTGRES
from topology.model import Service, Topology

NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
SMTP_RELAY_PORT = 587  # submission: what the prod overlay's external relay listens on
UID = 10001  # the shop user of deploy/docker/python.Dockerfile


def _pods(*names: str) -> dict[str, Any]:
    if len(names) == 1:
        return {"podSelector": {"matchLabels": {NAME: names[0]}}}
    expr = {"key": NAME, "operator": "In", "values": list(names)}
    return {"podSelector": {"matchExpressions": [expr]}}


def _rule(side: str, peers: list[dict[str, Any]] | None, *ports: int) -> dict[str, Any]:
    rule: dict[str, Any] = {side: peers} if peers else {}
    return {**rule, "ports": [{"port": p} for p in ports]}


def _policy(name: str, selector: dict[str, Any], ingress: list, egress: list) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": {
            **selector,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def _ref(kind: str, name: str, key: str) -> dict[str, Any]:
    ref = "configMapKeyRef" if kind == "configmap" else "secretKeyRef"
    return {"valueFrom": {ref: {"name": name, "key": key}}}


def service_env(t: Topology, s: Service) -> list[dict[str, Any]]:
    """The server's (and its migrate step's) environment: values from the manifest, secrets
    and shared settings by reference."""
    env: list[dict[str, Any]] = [
        {"name": "SHOPMESH_ENV", "value": "prod"},
        # 0 = one process per CPU of the container's limit; pods scale out by the HPA.
        {"name": s.env("WORKERS"), "value": str(s.workers.kubernetes)},
        # Its own identity (services/runtime/auth): a seed no other service holds.
        {
            "name": s.env("IDENTITY_KEY"),
            **_ref("secret", f"shopmesh-identity-{s.name}", "identity-key"),
        },
        # User tokens' issuer and audience: one value for the auth service, every verifier
        # and Istio (k8s/base/kustomization.yaml, shopmesh-jwt).
        {"name": "SHOPMESH_JWT_ISSUER", **_ref("configmap", "shopmesh-jwt", "issuer")},
        {"name": "SHOPMESH_JWT_AUDIENCE", **_ref("configmap", "shopmesh-jwt", "audience")},
    ]
    env += [{"name": s.env(ref.var), **_ref(ref.kind, ref.name, ref.key)} for ref in s.secrets]
    for name, value in compose.service_env(t, s, calls_via=None).items():
        if s.smtp and name in (s.env("SMTP_HOST"), s.env("SMTP_PORT")):
            # The dev sink or the prod relay: the overlay's shopmesh-smtp ConfigMap says.
            key = name.rsplit("_", 1)[1].lower()
            env.append({"name": name, **_ref("configmap", "shopmesh-smtp", key)})
            continue
        env.append({"name": name, "value": value})
    if s.postgres:
        env.append(
            {"name": s.env("DB_PASSWORD"), **_ref("secret", "shopmesh-postgres", "app-password")}
        )
    return env


def _security() -> dict[str, Any]:
    """Every container of ours: no privilege escalation, read-only root, no capabilities."""
    locked = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True}
    return {**locked, "capabilities": {"drop": ["ALL"]}}


def _deployment(t: Topology, s: Service) -> dict[str, Any]:
    env = service_env(t, s)
    security = _security()
    grpc = {"grpc": {"port": s.port}}
    server = {
        "name": "server",
        "image": f"shopmesh/{s.name}",
        "ports": [
            {"name": "grpc", "containerPort": s.port},
            {"name": "metrics", "containerPort": s.metrics_port},
        ],
        "env": env,
        "readinessProbe": {**grpc, "periodSeconds": 5},
        "livenessProbe": {**grpc, "initialDelaySeconds": 10, "periodSeconds": 10,
                          "failureThreshold": 3},
        "startupProbe": {**grpc, "periodSeconds": 2, "failureThreshold": 30},
        # The worker supervisor keeps its metrics files in /tmp (services/runtime/workers.py).
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "384Mi"},
        },
        "securityContext": security,
    }  # fmt: skip
    pod: dict[str, Any] = {
        "serviceAccountName": s.name,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
    }
    if s.postgres:
        # Alembic upgrade under an advisory lock (services/runtime/migrations.py), so replicas
        # starting together do not race; the whole configuration is checked first.
        pod["initContainers"] = [
            {
                "name": "migrate",
                "image": f"shopmesh/{s.name}",
                "command": ["python", "-m", s.module, "migrate"],
                "env": env,
                "resources": {
                    "requests": {"cpu": "50m", "memory": "96Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                },
                "securityContext": security,
            }
        ]
    pod["containers"] = [server]
    labels = {NAME: s.name, COMPONENT: "service"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": s.name, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {NAME: s.name}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(s.metrics_port),
                    },
                },
                "spec": pod,
            },
        },
    }


def service_policy(t: Topology, s: Service) -> dict[str, Any]:
    """Exactly the manifest's edges of one service (tests/unit/topology check both ways)."""
    callers = ["envoy", *t.callers_of(s.name)]
    ingress = [
        _rule("from", [_pods(c) for c in callers], s.port),
        _rule("from", [_pods("prometheus")], s.metrics_port),
    ]
    egress = [_rule("to", [_pods(c)], t.service(c).port) for c in s.calls]
    if s.postgres:
        egress.append(_rule("to", [_pods("postgres-primary")], POSTGRES))
        if s.postgres.replica:
            egress.append(_rule("to", [_pods("postgres-replica")], POSTGRES))
    if s.mongo:
        egress.append(_rule("to", [_pods("mongo")], MONGO))
    if s.uses_kafka:
        egress.append(_rule("to", [_pods("kafka")], KAFKA))
        egress.append(_rule("to", [_pods("registry")], t.infra("registry").port("http")))
    if s.smtp:
        # The dev sink in the cluster, or the relay the prod overlay names (outside it).
        egress.append(_rule("to", None, t.infra("mail").port("smtp"), SMTP_RELAY_PORT))
    return _policy(s.name, _pods(s.name), ingress, egress)


def service_docs(t: Topology, s: Service) -> list[dict[str, Any]]:
    labels = {NAME: s.name, COMPONENT: "service"}
    lo, hi = s.replicas
    cpu = {"type": "Utilization", "averageUtilization": 70}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": s.name}},
        _deployment(t, s),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": s.name, "labels": labels},
            "spec": {
                "selector": {NAME: s.name},
                "ports": [
                    {"name": "grpc", "port": s.port, "targetPort": "grpc", "appProtocol": "grpc"},
                    {"name": "http-metrics", "port": s.metrics_port, "targetPort": "metrics"},
                ],
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": s.name, "labels": labels},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": s.name},
                "minReplicas": lo,
                "maxReplicas": hi,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": cpu}}],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": s.name, "labels": labels},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {NAME: s.name}}},
        },
        service_policy(t, s),
    ]
