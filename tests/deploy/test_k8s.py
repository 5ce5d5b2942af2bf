"""Kubernetes manifests: each overlay builds and validates strictly (core + Istio CRD
schemas), every service the schemas define is deployed as the design says, and a broken
copy of the manifests is rejected (so the validation can fail)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import validate
from mesh import container, prometheus
from mesh.api import Service
from mesh.services import SERVICES, metrics_port
from topology import topology

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


def _peer(peer: dict[str, Any]) -> str:
    """A NetworkPolicy peer as one readable string: `name=x`, `component=x`, `ns=x`, `any`."""
    parts = []
    if "namespaceSelector" in peer:
        labels = peer["namespaceSelector"].get("matchLabels", {})
        parts.append(f"ns={labels.get('kubernetes.io/metadata.name', labels)}")
    pods = peer.get("podSelector")
    if pods is not None:
        labels = pods.get("matchLabels", {})
        exprs = pods.get("matchExpressions", [])
        for key, value in sorted(labels.items()):
            parts.append(f"{key.removeprefix('app.kubernetes.io/')}={value}")
        for e in exprs:
            assert e["operator"] == "In", e
            parts.append(f"{e['key'].removeprefix('app.kubernetes.io/')} in {sorted(e['values'])}")
        if not labels and not exprs:
            parts.append("pods=all")
    return ",".join(parts) or "any"


def _edges(docs: Docs, name: str, direction: str) -> set[tuple[str, int]]:
    """Every (peer, port) one policy opens in `direction` ("ingress" or "egress")."""
    side = "to" if direction == "egress" else "from"
    edges = set()
    for rule in _one(docs, "NetworkPolicy", name)["spec"].get(direction, []):
        peers = [_peer(p) for p in rule.get(side, [])] or ["any"]
        for peer in peers:
            for port in rule["ports"]:
                edges.add((peer, port["port"]))
    return edges


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


# ---- observability: Prometheus and Grafana in the cluster


def _config_map(docs: Docs, prefix: str) -> dict[str, str]:
    """The data of the generated ConfigMap `prefix-<hash>` (kustomize appends the hash)."""
    found = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].rsplit("-", 1)[0] == prefix
    ]
    assert len(found) == 1, f"ConfigMap {prefix}: {len(found)} found"
    return found[0]["data"]


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def test_both_overlays_run_prometheus_and_grafana(overlay: tuple[str, Docs]) -> None:
    _, docs = overlay
    prom = _one(docs, "StatefulSet", "prometheus")
    graf = _one(docs, "Deployment", "grafana")
    for workload, port in ((prom, 9090), (graf, 3000)):
        pod = _pod(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        (container,) = pod["containers"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["resources"]["requests"] and container["resources"]["limits"]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] == "http"
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        name = workload["metadata"]["name"]
        service = _one(docs, "Service", name)
        assert [p["port"] for p in service["spec"]["ports"]] == [port]
        assert _one(docs, "NetworkPolicy", name)["spec"]["podSelector"] == {
            "matchLabels": {"app.kubernetes.io/name": name}
        }
    # The admin password comes from the hand-made Secret, never a literal.
    env = {e["name"]: e for e in _pod(graf)["containers"][0]["env"]}
    assert "value" not in env["GF_SECURITY_ADMIN_PASSWORD"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "shopmesh-grafana",
        "key": "admin-password",
    }
    assert "shopmesh-grafana" in validate.EXTERNAL_SECRETS
    assert env["GF_AUTH_ANONYMOUS_ENABLED"]["value"] == "false"
    # kubernetes_sd reads pods in its own namespace and nothing else.
    role = _one(docs, "Role", "prometheus")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    binding = _one(docs, "RoleBinding", "prometheus")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "prometheus", "namespace": "shop"}
    ]
    assert _pod(prom)["serviceAccountName"] == "prometheus"
    assert _one(docs, "Ingress", "grafana")["spec"]["ingressClassName"] == "nginx"


def test_grafana_dashboards_config_map_holds_every_generated_dashboard(
    overlay: tuple[str, Docs],
) -> None:
    _, docs = overlay
    generated = {
        p.name: p for p in (ROOT / "mesh" / "out" / "grafana" / "dashboards").glob("*.json")
    }
    assert {"mesh.json", "events.json"} <= set(generated)
    data = _config_map(docs, "grafana-dashboards")
    assert set(data) == set(generated)
    for name, path in generated.items():
        assert json.loads(data[name]) == json.loads(path.read_text()), name
    # ... mounted where the provisioned provider looks, beside a datasource for the Service.
    graf = _pod(_one(docs, "Deployment", "grafana"))
    mounts = {m["name"]: m["mountPath"] for m in graf["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v.get("configMap", {}).get("name", "") for v in graf["volumes"]}
    providers = yaml.safe_load(_config_map(docs, "grafana-dashboard-providers")["shopmesh.yml"])
    (provider,) = providers["providers"]
    assert mounts["dashboards"] == provider["options"]["path"]
    assert volumes["dashboards"].startswith("grafana-dashboards-")
    datasources = yaml.safe_load(_config_map(docs, "grafana-datasources")["shopmesh.yml"])
    assert [d["url"] for d in datasources["datasources"]] == ["http://prometheus:9090"]
    assert mounts["datasources"] == "/etc/grafana/provisioning/datasources"


def test_prometheus_runs_the_generators_config_and_rules(overlay: tuple[str, Docs]) -> None:
    _, docs = overlay
    data = _config_map(docs, "prometheus-config")
    assert data["rules.yml"] == (ROOT / "mesh" / "out" / "prometheus" / "rules.yml").read_text()
    config = yaml.safe_load(data["prometheus.yml"])
    opt = prometheus.PrometheusOptions(
        scrape_interval=container.SCRAPE_INTERVAL, evaluation_interval=container.SCRAPE_INTERVAL
    )
    assert config == prometheus.kubernetes_scrape_config(opt)
    local = yaml.safe_load((ROOT / "mesh" / "out" / "prometheus" / "prometheus.yml").read_text())
    jobs = [j["job_name"] for j in config["scrape_configs"]]
    assert jobs == [j["job_name"] for j in local["scrape_configs"]]  # nginx included
    assert config["rule_files"] == ["rules.yml"]


def _kept_names(job: dict[str, Any]) -> set[str]:
    keep = job["relabel_configs"][0]
    assert keep["action"] == "keep" and keep["regex"].endswith(";true")
    return set(keep["regex"].removesuffix(";true").strip("()").split("|"))


def test_every_scrape_job_finds_annotated_pods_whose_policy_admits_prometheus(
    overlay: tuple[str, Docs],
) -> None:
    """A job's pods carry prometheus.io/scrape and a port a container serves, and their
    NetworkPolicy lets Prometheus (and only it) reach that port."""
    _, docs = overlay
    config = yaml.safe_load(_config_map(docs, "prometheus-config")["prometheus.yml"])
    workloads = {
        d["metadata"]["name"]: d for d in docs if d["kind"] in ("Deployment", "StatefulSet")
    }
    expected = {
        "services": {n: metrics_port(n) for n in SERVICES},
        "registry": {"registry": 8085},
        "envoy": {"envoy": 9901},
        "nginx": {"gateway": 9113},
    }
    sd_jobs = [j for j in config["scrape_configs"] if "kubernetes_sd_configs" in j]
    assert {j["job_name"]: _kept_names(j) for j in sd_jobs} == {
        job: set(names) for job, names in expected.items()
    }
    for names in expected.values():
        for name, port in names.items():
            template = workloads[name]["spec"]["template"]
            notes = template["metadata"]["annotations"]
            assert notes["prometheus.io/scrape"] == "true", name
            assert notes["prometheus.io/port"] == str(port), name
            served = {
                p["containerPort"]
                for c in template["spec"]["containers"]
                for p in c.get("ports", [])
            }
            assert port in served, name
            assert ("name=prometheus", port) in _edges(docs, name, "ingress"), name
    envoy = next(j for j in sd_jobs if j["job_name"] == "envoy")
    assert envoy["metrics_path"] == "/stats/prometheus"
    assert (
        workloads["envoy"]["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
        == "/stats/prometheus"
    )


def test_observability_network_policy_edges(overlay: tuple[str, Docs]) -> None:
    """Prometheus scrapes the metrics ports and asks the API server for pods; Grafana talks
    to Prometheus only; only the edge (the NGINX Ingress controller) reaches Grafana."""
    name, docs = overlay
    scraped = {(f"name in {sorted(SERVICES)}", metrics_port(n)) for n in SERVICES}
    assert _edges(docs, "prometheus", "egress") == scraped | {
        ("name=registry", 8085),
        ("name=envoy", 9901),
        ("name=gateway", 9113),
        ("any", 443),
        ("any", 6443),
    }
    assert _edges(docs, "prometheus", "ingress") == {("name=grafana", 9090)}
    assert _edges(docs, "grafana", "egress") == {("name=prometheus", 9090)}
    assert _edges(docs, "grafana", "ingress") == {("ns=ingress-nginx", 3000)}
    # No other policy admits anyone to Grafana or Prometheus.
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
        sel = policy["spec"]["podSelector"].get("matchLabels", {})
        if sel.get("app.kubernetes.io/name") in ("grafana", "prometheus"):
            assert policy["metadata"]["name"] in (
                "grafana",
                "prometheus",
                "prometheus-merged-metrics",
            )
    if name == "prod":  # Istio merges app metrics on the sidecar agent's :15020
        assert _edges(docs, "allow-prometheus-merged-metrics", "ingress") == {
            ("name=prometheus", 15020)
        }
        assert _edges(docs, "prometheus-merged-metrics", "egress") == {("pods=all", 15020)}
        for workload in ("prometheus", "grafana"):
            template = next(
                d
                for d in docs
                if d["metadata"]["name"] == workload and d["kind"] in ("Deployment", "StatefulSet")
            )["spec"]["template"]
            assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) missing")
def test_promtool_accepts_the_cluster_scrape_config(tmp_path: Path) -> None:
    """Debian's promtool is built without Kubernetes service discovery, so the SD blocks are
    swapped for a static target; the relabelling, intervals and rules are checked as is."""
    generated = ROOT / "mesh" / "out" / "prometheus"
    config = yaml.safe_load((generated / "prometheus.k8s.yml").read_text())
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None):
            job["static_configs"] = [{"targets": ["10.0.0.1:9451"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(generated / "rules.yml", tmp_path / "rules.yml")
    done = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


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
    """k8s/ and the mesh output its kustomizations load (mesh/out), side by side."""
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    shutil.copytree(ROOT / "mesh" / "out", tmp_path / "mesh" / "out")
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

    _edit(k8s_copy / "generated" / "services" / "product.yaml", bad)
    with pytest.raises(validate.Invalid, match=r"livenessProbe\.grpc\.port"):
        validate.validate_overlay(k8s_copy / "overlays" / "dev")


def test_rejects_grpc_probe_on_a_port_the_container_does_not_serve(k8s_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        if d["kind"] == "Deployment":
            d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = 5999

    _edit(k8s_copy / "generated" / "services" / "order.yaml", bad)
    with pytest.raises(validate.Invalid, match="gRPC port 5999 is not a container port"):
        validate.validate_overlay(k8s_copy / "overlays" / "prod")


def test_rejects_a_deployment_without_containers(k8s_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        if d["kind"] == "Deployment":
            del d["spec"]["template"]["spec"]["containers"]

    _edit(k8s_copy / "generated" / "services" / "user.yaml", bad)
    with pytest.raises(validate.Invalid, match="'containers' is a required property"):
        validate.validate_overlay(k8s_copy / "overlays" / "dev")


def test_rejects_a_misspelled_field(k8s_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        if d["kind"] == "Service":
            d["spec"]["selectr"] = d["spec"].pop("selector")

    _edit(k8s_copy / "generated" / "services" / "auth.yaml", bad)
    with pytest.raises(validate.Invalid, match="'selectr' was unexpected"):
        validate.validate_overlay(k8s_copy / "overlays" / "dev")


def test_rejects_a_bad_istio_resource(k8s_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        if d["kind"] == "VirtualService":
            d["spec"]["http"][0]["timeout"] = 5  # must be a duration string

    _edit(k8s_copy.parent / "mesh" / "out" / "istio" / "order.yaml", bad)
    with pytest.raises(validate.Invalid, match=r"VirtualService/order: spec\.http\.0\.timeout"):
        validate.validate_overlay(k8s_copy / "overlays" / "prod")


def test_rejects_a_service_selecting_no_pod() -> None:
    docs = validate.kustomize_build(ROOT / "k8s" / "overlays" / "dev")
    broken = copy.deepcopy(docs)
    for d in broken:
        if d["kind"] == "Service" and d["metadata"]["name"] == "notification":
            d["spec"]["selector"] = {"app.kubernetes.io/name": "notifications"}
    assert any("matches no pod" in e for e in validate.cross_check(broken))
