"""Kubernetes manifests, observability: Prometheus and Grafana run in both overlays,
every scrape job finds pods whose policy admits Prometheus, and the cluster scrape config
is one promtool accepts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import validate
from mesh import container, prometheus
from mesh.services import SERVICES, metrics_port
from tests.deploy.k8s_docs import Docs, _edges, _one

ROOT = validate.ROOT


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
