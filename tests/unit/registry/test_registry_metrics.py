"""Registry metrics match the services' conventions and Prometheus scrapes them."""

from __future__ import annotations

from mesh import prometheus
from registry import metrics as registry_metrics
from services.runtime import metrics as runtime_metrics


def test_registry_latency_buckets_match_the_services() -> None:
    # Repeated in registry/metrics.py (its image has no services/); dashboards compare them.
    assert registry_metrics.LATENCY_BUCKETS == runtime_metrics.LATENCY_BUCKETS


def test_prometheus_scrapes_the_registry_with_a_service_label() -> None:
    config = prometheus.scrape_config(prometheus.PrometheusOptions(registry_port=18085))
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    groups = jobs[prometheus.REGISTRY_JOB]["static_configs"]
    assert groups == [{"targets": ["127.0.0.1:18085"], "labels": {"service": "registry"}}]
    assert jobs[prometheus.REGISTRY_JOB].get("metrics_path", "/metrics") == "/metrics"
