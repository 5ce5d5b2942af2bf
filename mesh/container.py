"""The container variants of the mesh output (compose and Kubernetes), from the same builders
as the local files (never by editing them):

- Envoy: every upstream at <service>:<port> (compose service names and Kubernetes Services in
  one namespace are the same names), listeners and admin on 0.0.0.0, the descriptor and
  OpenAPI files where deploy/docker/envoy.Dockerfile puts them;
- Prometheus: compose's static targets at the container hosts, Kubernetes' from
  kubernetes_sd (mesh.prometheus.kubernetes_scrape_config), both at a 15 s interval;
- Grafana provisioning pointing at the `prometheus` host;
- the kustomizations that make Kubernetes ConfigMaps of these files where they are, so no
  copy of mesh/out lives under k8s/ (k8s/base/observability and k8s/components/istio list
  these directories as resources).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mesh import envoy, grafana, prometheus
from mesh.api import Api
from services.runtime.auth import DEFAULT_AUDIENCE, DEFAULT_ISSUER

# Where deploy/docker/envoy.Dockerfile puts the mesh outputs.
ENVOY_ETC = "/etc/envoy"
# In containers a 2 s scrape (the local stack's, for tests) costs more than it tells.
SCRAPE_INTERVAL = "15s"
PROMETHEUS_URL = "http://prometheus:9090"


def _bind_all(node: Any) -> None:
    """Listeners and admin bind 0.0.0.0: in a container 127.0.0.1 is unreachable from peers."""
    if isinstance(node, dict):
        sock = node.get("socket_address")
        if isinstance(sock, dict) and sock.get("address") == "127.0.0.1":
            sock["address"] = "0.0.0.0"
        for value in node.values():
            _bind_all(value)
    elif isinstance(node, list):
        for value in node:
            _bind_all(value)


def envoy_config(
    api: Api, jwt_issuer: str = DEFAULT_ISSUER, jwt_audience: str = DEFAULT_AUDIENCE
) -> dict[str, Any]:
    opt = envoy.EnvoyOptions(
        descriptor_path=f"{ENVOY_ETC}/descriptor.binpb",
        openapi_path=f"{ENVOY_ETC}/openapi.json",
        docs_path=f"{ENVOY_ETC}/docs.html",
        endpoints={s.short: [(s.short, s.port)] for s in api.services},
        jwt_issuer=jwt_issuer,
        jwt_audience=jwt_audience,
    )
    config = envoy.build(api, opt)
    _bind_all({k: v for k, v in config.items() if k != "static_resources"})
    for listener in config["static_resources"]["listeners"]:
        _bind_all(listener["address"])
    # STATIC clusters take only IP literals; names need DNS (re-resolved, so a restarted
    # container or a rescheduled pod with a new address is picked up).
    for cluster in config["static_resources"]["clusters"]:
        if cluster.get("type") == "STATIC":
            cluster["type"] = "STRICT_DNS"
            cluster["dns_lookup_family"] = "V4_ONLY"
    return config


def _options() -> prometheus.PrometheusOptions:
    return prometheus.PrometheusOptions(
        scrape_interval=SCRAPE_INTERVAL, evaluation_interval=SCRAPE_INTERVAL
    )


def compose_scrape_config(api: Api) -> dict[str, Any]:
    """The local config's code path with container hosts: same jobs, ports and `service`
    labels. Prometheus scrapes itself on loopback; NGINX through compose's nginx-exporter."""
    opt = _options()
    hosts = {
        **{s.short: s.short for s in api.services},
        "registry": "registry",
        "envoy": "envoy",
        "nginx": "nginx-exporter",
    }
    return prometheus.scrape_config(dataclasses.replace(opt, hosts=hosts))


def kubernetes_scrape_config() -> dict[str, Any]:
    return prometheus.kubernetes_scrape_config(_options())


def grafana_provisioning() -> dict[str, dict[str, Any]]:
    """provisioning/<kind>/shopmesh.yml -> container/<kind>.yml, for the `prometheus` host."""
    return {
        f"container/{path.split('/')[1]}.yml": doc
        for path, doc in grafana.provisioning(PROMETHEUS_URL, SCRAPE_INTERVAL).items()
    }


def istio_kustomization(names: list[str], header: str) -> str:
    listing = "".join(f"  - {n}\n" for n in sorted(names))
    return (
        f"# {header}\n"
        "# The Istio resources, loaded by k8s/components/istio (which also takes the\n"
        "# user-token issuer from the shopmesh-jwt ConfigMap).\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources:\n{listing}"
    )


def observability_kustomization(dashboards: list[str], header: str) -> str:
    """Kubernetes ConfigMaps of the Prometheus config and rules and of Grafana's provisioning
    and dashboards (k8s/base/observability mounts them). A changed file renames its
    ConfigMap (content hash), which rolls the pod."""
    listing = "".join(f"      - {n}=grafana/dashboards/{n}\n" for n in sorted(dashboards))
    return (
        f"# {header}\n"
        "# ConfigMaps of the observability config for Kubernetes (k8s/base/observability).\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "configMapGenerator:\n"
        "  - name: prometheus-config\n"
        "    files:\n"
        "      - prometheus.yml=prometheus/prometheus.k8s.yml\n"
        "      - rules.yml=prometheus/rules.yml\n"
        "  - name: grafana-datasources\n"
        "    files: [shopmesh.yml=grafana/container/datasources.yml]\n"
        "  - name: grafana-dashboard-providers\n"
        "    files: [shopmesh.yml=grafana/container/dashboards.yml]\n"
        "  - name: grafana-dashboards\n"
        "    files:\n"
        f"{listing}"
    )
