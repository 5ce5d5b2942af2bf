"""Prometheus scrape config and alerting rules, from the same service table and schema as the
routes (mesh/out/prometheus/{prometheus.yml,rules.yml}).

Targets: every service's /metrics (port from mesh.services.metrics_port, label `service`),
the schema registry's /metrics on its API port (HTTP RED, registry/metrics.py, label
`service: registry`), Envoy's admin /stats/prometheus, the NGINX exporter (stub_status,
mesh/templates/nginx.conf.j2) and Prometheus itself. The local interval is short (2 s) so
tests see a figure within seconds.

Rules: RED per RPC (error ratio; p99 latency against half the method's schema timeout, kept
as one recording rule per method so the alert stays one rule), Kafka consumer lag, DLQ
growth, replica lag and fallbacks, outbox age, registry 5xx ratio, targets down.
`promtool check rules` accepts the file (tests/unit/observability).

kubernetes_scrape_config() is the cluster variant (same jobs and labels, targets from
kubernetes_sd); mesh/container.py writes it, and the compose variant of scrape_config(),
beside the local config in mesh/out/prometheus.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mesh.api import Api
from mesh.services import SERVICES, metrics_port
from topology import topology

# gRPC codes that mean "the server failed", not "the caller asked for something wrong".
SERVER_ERROR_CODES = "INTERNAL|UNAVAILABLE|DEADLINE_EXCEEDED|UNKNOWN|DATA_LOSS|UNIMPLEMENTED"
NGINX_STATUS_PORT = 8088  # local-only stub_status server of the gateway (nginx.conf.j2)
NGINX_EXPORTER_PORT = 9113  # prometheus-nginx-exporter (Debian), stack component
# The registry serves /metrics beside its REST API, on its manifest port.
REGISTRY_PORT = topology().infra("registry").port("http")
SERVICES_JOB = "services"
REGISTRY_JOB = "registry"


@dataclass(frozen=True)
class PrometheusOptions:
    host: str = "127.0.0.1"
    prometheus_port: int = 9090
    envoy_admin_port: int = 9901
    # None: no NGINX exporter where this config runs, so no `nginx` job
    nginx_exporter_port: int | None = NGINX_EXPORTER_PORT
    registry_port: int = REGISTRY_PORT
    scrape_interval: str = "2s"
    evaluation_interval: str = "2s"
    # service -> metrics port; default every service at mesh.services.metrics_port (tests run
    # private instances elsewhere)
    service_ports: Mapping[str, int] = field(default_factory=dict)
    # target -> host where it is not `host`: a service name, "registry", "envoy", "nginx" or
    # "prometheus". Containers reach each other by name (mesh/container.py).
    hosts: Mapping[str, str] = field(default_factory=dict)


def scrape_config(opt: PrometheusOptions | None = None) -> dict[str, Any]:
    opt = opt or PrometheusOptions()
    ports = dict(opt.service_ports) or {name: metrics_port(name) for name in SERVICES}

    def at(target: str, port: int) -> list[str]:
        return [f"{opt.hosts.get(target, opt.host)}:{port}"]

    jobs: list[dict[str, Any]] = [
        {
            "job_name": SERVICES_JOB,
            "static_configs": [
                {"targets": at(name, ports[name]), "labels": {"service": name}}
                for name in sorted(ports)
            ],
        },
        {
            "job_name": REGISTRY_JOB,
            "static_configs": [
                {"targets": at("registry", opt.registry_port), "labels": {"service": "registry"}}
            ],
        },
        {
            "job_name": "envoy",
            "metrics_path": "/stats/prometheus",
            "static_configs": [{"targets": at("envoy", opt.envoy_admin_port)}],
        },
    ]
    if opt.nginx_exporter_port is not None:
        jobs.append(
            {
                "job_name": "nginx",
                "static_configs": [{"targets": at("nginx", opt.nginx_exporter_port)}],
            }
        )
    jobs.append(
        {
            "job_name": "prometheus",
            "static_configs": [{"targets": at("prometheus", opt.prometheus_port)}],
        }
    )
    return {
        "global": {
            "scrape_interval": opt.scrape_interval,
            "scrape_timeout": opt.scrape_interval,
            "evaluation_interval": opt.evaluation_interval,
        },
        # Relative to this file: Prometheus resolves rule_files against the config's dir.
        "rule_files": ["rules.yml"],
        "scrape_configs": jobs,
    }


def _pod_job(
    name: str, workloads: list[str], path: str | None = None, service_label: bool = False
) -> dict[str, Any]:
    """One Kubernetes job: pods of these `app.kubernetes.io/name`s in Prometheus' own
    namespace that carry `prometheus.io/scrape: "true"`, scraped at the pod's
    `prometheus.io/port` (and `prometheus.io/path`, else `path`, else /metrics).

    The annotations, not the container ports, decide the address so Istio's metrics merging
    works unchanged: its injector rewrites them to the sidecar agent's :15020, which serves
    the app's metrics and the proxy's outside the STRICT mTLS listener."""
    job: dict[str, Any] = {
        "job_name": name,
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"own_namespace": True}}],
        "relabel_configs": [
            {
                "action": "keep",
                "source_labels": [
                    "__meta_kubernetes_pod_label_app_kubernetes_io_name",
                    "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
                ],
                "regex": f"({'|'.join(sorted(workloads))});true",
            },
            # One target per pod (role: pod yields one per container port; after this
            # rewrite they are identical and Prometheus keeps one).
            {
                "action": "replace",
                "source_labels": [
                    "__address__",
                    "__meta_kubernetes_pod_annotation_prometheus_io_port",
                ],
                "regex": "([^:]+)(?::\\d+)?;(\\d+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
            },
            {
                "action": "replace",
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
            },
            {
                "action": "replace",
                "source_labels": ["__meta_kubernetes_pod_name"],
                "target_label": "pod",
            },
        ],
    }
    if service_label:
        # The label dashboards and alerts filter on, where the local config sets it.
        job["relabel_configs"].append(
            {
                "action": "replace",
                "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
                "target_label": "service",
            }
        )
    if path is not None:
        job["metrics_path"] = path
    return job


def kubernetes_scrape_config(opt: PrometheusOptions | None = None) -> dict[str, Any]:
    """The Kubernetes variant of scrape_config(): the same jobs, `service` labels, intervals
    and rules, with targets found by kubernetes_sd (role pod) instead of fixed addresses, so
    every replica an HPA adds is scraped on its own (a Service name would load-balance
    scrapes across replicas and interleave their counters). Needs get/list/watch on pods
    (k8s/base/observability/prometheus.yaml grants it)."""
    opt = opt or PrometheusOptions()
    jobs = [
        _pod_job(SERVICES_JOB, list(SERVICES), service_label=True),
        _pod_job(REGISTRY_JOB, ["registry"], service_label=True),
        _pod_job("envoy", ["envoy"], path="/stats/prometheus"),
        # The gateway pod's nginx-prometheus-exporter sidecar (stub_status on loopback).
        _pod_job("nginx", ["gateway"]),
        {
            "job_name": "prometheus",
            "static_configs": [{"targets": [f"127.0.0.1:{opt.prometheus_port}"]}],
        },
    ]
    base = scrape_config(opt)
    return {**base, "scrape_configs": jobs}


def _alert(name: str, expr: str, for_: str, severity: str, summary: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary},
    }


def rules(api: Api) -> dict[str, Any]:
    timeouts = [
        {
            "record": "shop:rpc_timeout_seconds",
            "expr": f"vector({m.timeout_ms / 1000:g})",
            "labels": {"service": svc.short, "method": m.grpc_path},
        }
        for svc in api.services
        for m in svc.methods
    ]
    red = [
        {
            "record": "shop:rpc_requests:rate1m",
            "expr": "sum by (service, method, code) (rate(rpc_requests_total[1m]))",
        },
        {
            "record": "shop:rpc_error_ratio:rate5m",
            "expr": (
                "sum by (service, method) "
                f'(rate(rpc_requests_total{{code=~"{SERVER_ERROR_CODES}"}}[5m]))'
                " / sum by (service, method) (rate(rpc_requests_total[5m]))"
            ),
        },
        {
            "record": "shop:rpc_latency_p99:rate5m",
            "expr": (
                "histogram_quantile(0.99, "
                "sum by (service, method, le) (rate(rpc_duration_seconds_bucket[5m])))"
            ),
        },
    ]
    alerts = [
        _alert(
            "ShopRpcErrorRatioHigh",
            "shop:rpc_error_ratio:rate5m > 0.05",
            "5m",
            "page",
            "{{ $labels.service }} {{ $labels.method }}: over 5% of calls fail on the server",
        ),
        _alert(
            "ShopRpcLatencyP99High",
            "shop:rpc_latency_p99:rate5m > on (service, method) 0.5 * shop:rpc_timeout_seconds",
            "10m",
            "warning",
            "{{ $labels.service }} {{ $labels.method }}: p99 above half the schema timeout",
        ),
        _alert(
            "ShopConsumerLagHigh",
            "max by (service, group, topic) (kafka_consumer_lag) > 1000",
            "5m",
            "warning",
            "{{ $labels.group }} is {{ $value }} records behind on {{ $labels.topic }}",
        ),
        _alert(
            "ShopDeadLetterQueueGrowing",
            'max by (topic) (delta(kafka_topic_messages{topic=~".+\\\\.dlq"}[15m])) > 0',
            "1m",
            "warning",
            "{{ $labels.topic }} received dead letters: inspect, fix, replay",
        ),
        _alert(
            "ShopReplicaLagHigh",
            "max by (service) (db_replica_lag_bytes) > 16 * 1024 * 1024",
            "2m",
            "warning",
            "{{ $labels.service }}: replica over 16 MiB behind, reads fall back to the primary",
        ),
        _alert(
            "ShopReplicaFallback",
            'sum by (service) (rate(db_reads_total{target="primary", reason=~"replica_.+"}[5m]))'
            " > 0",
            "10m",
            "warning",
            "{{ $labels.service }}: reads fall back to the primary (replica down or behind)",
        ),
        _alert(
            "ShopOutboxStale",
            "max by (service) (order_outbox_oldest_pending_age_seconds"
            " or user_outbox_oldest_pending_age_seconds) > 60",
            "2m",
            "page",
            "{{ $labels.service }}: an event has waited over 60 s in the outbox (Kafka or relay)",
        ),
        _alert(
            "ShopRegistryErrorRatioHigh",
            'sum(rate(http_requests_total{service="registry", code=~"5.."}[5m]))'
            ' / sum(rate(http_requests_total{service="registry"}[5m])) > 0.05',
            "5m",
            "page",
            "schema registry: over 5% of requests fail (producers cannot serialize events)",
        ),
        _alert(
            "ShopTargetDown",
            "up == 0",
            "1m",
            "page",
            "{{ $labels.job }} {{ $labels.instance }} does not answer scrapes",
        ),
    ]
    return {
        "groups": [
            {"name": "shopmesh-rpc-timeouts", "rules": timeouts},
            {"name": "shopmesh-red", "rules": red},
            {"name": "shopmesh-alerts", "rules": alerts},
        ]
    }
