"""Kubernetes manifests: each overlay builds and validates strictly (core + Istio CRD
schemas), every service the schemas define is deployed as the design says, and a broken
copy of the manifests is rejected (so the validation can fail)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import validate
from mesh.api import Service

ROOT = validate.ROOT
Docs = list[dict[str, Any]]


@pytest.fixture(scope="module", params=validate.OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, Docs]:
    return request.param, validate.kustomize_build(ROOT / "k8s" / "overlays" / request.param)


def _one(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def test_overlay_is_valid_against_kubernetes_and_istio_schemas(overlay: tuple[str, Docs]) -> None:
    name, docs = overlay
    assert validate.validate_docs(docs) == [], name


def test_every_schema_service_has_deployment_service_probes_policy(
    overlay: tuple[str, Docs], schema_services: tuple[Service, ...]
) -> None:
    _, docs = overlay
    for svc in schema_services:
        deploy = _one(docs, "Deployment", svc.short)
        container = deploy["spec"]["template"]["spec"]["containers"][0]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == svc.port, (svc.short, probe)
        assert container["resources"]["requests"] and container["resources"]["limits"]
        service = _one(docs, "Service", svc.short)
        assert [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"] == [svc.port]
        policy = _one(docs, "NetworkPolicy", svc.short)
        assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": svc.short}
        assert _one(docs, "HorizontalPodAutoscaler", svc.short)
        assert _one(docs, "PodDisruptionBudget", svc.short)


def test_namespace_is_default_deny_with_dns_open(overlay: tuple[str, Docs]) -> None:
    _, docs = overlay
    deny = _one(docs, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = _one(docs, "NetworkPolicy", "allow-dns")
    assert {p["port"] for p in dns["spec"]["egress"][0]["ports"]} == {53}


def _egress_targets(docs: Docs, name: str) -> set[str]:
    targets = set()
    for rule in _one(docs, "NetworkPolicy", name)["spec"].get("egress", []):
        for peer in rule.get("to", []):
            labels = peer.get("podSelector", {}).get("matchLabels", {})
            if "app.kubernetes.io/name" in labels:
                targets.add(labels["app.kubernetes.io/name"])
    return targets


def test_network_policy_edges_are_the_designs(overlay: tuple[str, Docs]) -> None:
    _, docs = overlay
    assert _egress_targets(docs, "order") == {"product", "user", "mongo", "kafka", "registry"}
    assert {"kafka", "postgres-primary", "postgres-replica", "user"} <= _egress_targets(
        docs, "notification"
    )
    for svc in ("product", "auth"):
        assert _egress_targets(docs, svc) == {"postgres-primary", "postgres-replica"}
    assert _egress_targets(docs, "gateway") == {"envoy"}


def test_prod_runs_three_kafka_brokers_with_rf3_min_isr2() -> None:
    docs = validate.kustomize_build(ROOT / "k8s" / "overlays" / "prod")
    assert _one(docs, "StatefulSet", "kafka")["spec"]["replicas"] == 3
    (config,) = [d for d in docs if d["metadata"]["name"].startswith("kafka-config")]
    assert config["data"]["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
    assert config["data"]["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    assert config["data"]["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@kafka-") == 3
    kinds = {d["kind"] for d in docs if "istio.io" in d["apiVersion"]}
    assert {"PeerAuthentication", "AuthorizationPolicy", "VirtualService"} <= kinds


def test_postgres_has_separate_write_and_read_services(overlay: tuple[str, Docs]) -> None:
    _, docs = overlay
    primary = _one(docs, "Service", "postgres-primary")["spec"]["selector"]
    replica = _one(docs, "Service", "postgres-replica")["spec"]["selector"]
    assert primary != replica
    replica_set = _one(docs, "StatefulSet", "postgres-replica")
    assert "replica-start.sh" in " ".join(
        replica_set["spec"]["template"]["spec"]["containers"][0]["command"]
    )


def test_no_secret_value_is_committed(overlay: tuple[str, Docs]) -> None:
    _, docs = overlay
    assert [d for d in docs if d["kind"] == "Secret"] == []


# ---- the validation rejects broken manifests


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    return tmp_path / "k8s"


def _edit(path: Path, change: Any) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for d in docs:
        change(d)
    path.write_text(yaml.safe_dump_all(docs))


def test_rejects_grpc_probe_on_a_named_port(k8s_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        if d["kind"] == "Deployment":
            d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "grpc"

    _edit(k8s_copy / "base" / "services" / "product.yaml", bad)
    with pytest.raises(validate.Invalid, match=r"livenessProbe\.grpc\.port"):
        validate.validate_overlay(k8s_copy / "overlays" / "dev")


def test_rejects_grpc_probe_on_a_port_the_container_does_not_serve(k8s_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        if d["kind"] == "Deployment":
            d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = 5999

    _edit(k8s_copy / "base" / "services" / "order.yaml", bad)
    with pytest.raises(validate.Invalid, match="gRPC port 5999 is not a container port"):
        validate.validate_overlay(k8s_copy / "overlays" / "prod")


def test_rejects_a_deployment_without_containers(k8s_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        if d["kind"] == "Deployment":
            del d["spec"]["template"]["spec"]["containers"]

    _edit(k8s_copy / "base" / "services" / "user.yaml", bad)
    with pytest.raises(validate.Invalid, match="'containers' is a required property"):
        validate.validate_overlay(k8s_copy / "overlays" / "dev")


def test_rejects_a_misspelled_field(k8s_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        if d["kind"] == "Service":
            d["spec"]["selectr"] = d["spec"].pop("selector")

    _edit(k8s_copy / "base" / "services" / "auth.yaml", bad)
    with pytest.raises(validate.Invalid, match="'selectr' was unexpected"):
        validate.validate_overlay(k8s_copy / "overlays" / "dev")


def test_rejects_a_bad_istio_resource(k8s_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        if d["kind"] == "VirtualService":
            d["spec"]["http"][0]["timeout"] = 5  # must be a duration string

    _edit(k8s_copy / "components" / "istio" / "generated" / "order.yaml", bad)
    with pytest.raises(validate.Invalid, match=r"VirtualService/order: spec\.http\.0\.timeout"):
        validate.validate_overlay(k8s_copy / "overlays" / "prod")


def test_rejects_a_service_selecting_no_pod() -> None:
    docs = validate.kustomize_build(ROOT / "k8s" / "overlays" / "dev")
    broken = copy.deepcopy(docs)
    for d in broken:
        if d["kind"] == "Service" and d["metadata"]["name"] == "notification":
            d["spec"]["selector"] = {"app.kubernetes.io/name": "notifications"}
    assert any("matches no pod" in e for e in validate.cross_check(broken))
