"""Kubernetes manifests: each overlay builds and validates strictly (core + Istio CRD
schemas) and every service the schemas define is deployed as the design says;
test_k8s_observability.py holds Prometheus and Grafana's, test_k8s_rejects.py shows the
validation rejects a broken copy."""

from __future__ import annotations

from deploy import validate
from mesh.api import Service
from mesh.services import SERVICES
from tests.deploy.k8s_docs import Docs, _edges, _one
from topology import topology

ROOT = validate.ROOT


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


def test_network_policy_edges_are_the_manifests(overlay: tuple[str, Docs]) -> None:
    """Each service's policy, as built, opens exactly its manifest edges: its gRPC port to
    Envoy and the services that declare a call to it; out, the services it calls (each on
    its port), its stores, Kafka and the registry when it uses topics."""
    _, docs = overlay
    t = topology()
    for s in t.services:
        callers = {f"name={c}" for c in ("envoy", *t.callers_of(s.name))}
        ingress = _edges(docs, s.name, "ingress")
        assert {peer for peer, port in ingress if port == s.port} == callers, s.name
        assert {("name=prometheus", s.metrics_port)} == ingress - {(c, s.port) for c in callers}
        egress = _edges(docs, s.name, "egress")
        called = {(f"name={c}", t.service(c).port) for c in s.calls}
        stores = set()
        if s.postgres:
            stores.add(("name=postgres-primary", 5432))
            if s.postgres.replica:
                stores.add(("name=postgres-replica", 5432))
        if s.mongo:
            stores.add(("name=mongo", 27017))
        if s.uses_kafka:
            stores |= {("name=kafka", 9092), ("name=registry", 8085)}
        mail = {("any", t.infra("mail").port("smtp")), ("any", 587)} if s.smtp else set()
        assert egress == called | stores | mail, s.name
    assert _egress_targets(docs, "gateway") == {"envoy"}


def test_user_envoy_registry_egress_is_exactly_the_designs(overlay: tuple[str, Docs]) -> None:
    """docs/architecture.md §2/§4/§5: user writes PostgreSQL (reads the replica) and publishes
    UserRegistered (Kafka + registry); Envoy forwards to the services' gRPC ports only; the
    registry keeps its subjects in the PostgreSQL primary. Nothing more."""
    _, docs = overlay
    assert _edges(docs, "user", "egress") == {
        ("name=postgres-primary", 5432),
        ("name=postgres-replica", 5432),
        ("name=kafka", 9092),
        ("name=registry", 8085),
    }
    assert _edges(docs, "envoy", "egress") == {("component=service", p) for p in SERVICES.values()}
    assert _edges(docs, "registry", "egress") == {("name=postgres-primary", 5432)}


def test_mongo_registry_ingress_and_migrations_exist(overlay: tuple[str, Docs]) -> None:
    _, docs = overlay
    mongo = _one(docs, "StatefulSet", "mongo")
    assert mongo["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "mongo"
    registry = _one(docs, "Deployment", "registry")
    assert registry["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "shopmesh/registry"
    )
    ingress = _one(docs, "Ingress", "shopmesh")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "gateway", "port": {"name": "http"}}
    # Each PostgreSQL-backed service migrates in an init container before its server starts.
    for name in (s.name for s in topology().services if s.postgres):
        pod = _one(docs, "Deployment", name)["spec"]["template"]["spec"]
        (migrate,) = [c for c in pod.get("initContainers", []) if c["name"] == "migrate"]
        assert migrate["command"] == ["python", "-m", f"services.{name}.main", "migrate"]
        assert migrate["image"] == pod["containers"][0]["image"]


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
