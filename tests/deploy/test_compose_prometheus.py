"""Compose's Prometheus config comes from the local config's code path: the same jobs,
ports and `service` labels the dashboards and alerts filter on, with container hosts."""

from __future__ import annotations

import yaml

from deploy import validate
from mesh import prometheus
from mesh.api import Service
from mesh.services import metrics_port

ROOT = validate.ROOT
COMPOSE_SCRAPE = ROOT / "mesh" / "out" / "prometheus" / "prometheus.compose.yml"


def _groups(config: dict) -> dict[str, list[dict]]:
    return {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}


def test_compose_scrape_config_labels_every_target_like_the_local_one(
    schema_services: tuple[Service, ...],
) -> None:
    composed = yaml.safe_load(COMPOSE_SCRAPE.read_text())
    local = yaml.safe_load((ROOT / "mesh" / "out" / "prometheus" / "prometheus.yml").read_text())
    compose_services = set(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])
    jobs, local_jobs = _groups(composed), _groups(local)

    assert set(jobs) == set(local_jobs)  # NGINX through the nginx-exporter service
    for name, groups in jobs.items():
        assert [g.get("labels") for g in groups] == [g.get("labels") for g in local_jobs[name]]
        for group, local_group in zip(groups, local_jobs[name], strict=True):
            for target, local_target in zip(group["targets"], local_group["targets"], strict=True):
                host, port = target.rsplit(":", 1)
                assert port == local_target.rsplit(":", 1)[1], target
                # Each target is a compose service, except Prometheus scraping itself.
                assert host in compose_services or (name, host) == ("prometheus", "127.0.0.1")
    by_service = {g["labels"]["service"]: g["targets"] for g in jobs[prometheus.SERVICES_JOB]}
    assert by_service == {s.short: [f"{s.short}:{metrics_port(s.short)}"] for s in schema_services}
    assert jobs[prometheus.REGISTRY_JOB] == [
        {"labels": {"service": "registry"}, "targets": ["registry:8085"]}
    ]
    assert composed["rule_files"] == ["rules.yml"]  # compose mounts mesh/out's rules beside it
    assert jobs["nginx"] == [{"targets": [f"nginx-exporter:{prometheus.NGINX_EXPORTER_PORT}"]}]


def test_compose_nginx_exporter_reads_the_gateways_stub_status() -> None:
    """The official exporter scrapes stub_status on the port gateway.conf serves it on, a
    port compose does not publish (only 8080 is)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    exporter = compose["nginx-exporter"]
    image, tag = exporter["image"].rsplit(":", 1)
    assert image == "nginx/nginx-prometheus-exporter" and tag[0].isdigit()
    assert exporter["command"] == ["--nginx.scrape-uri=http://gateway:8088/stub_status"]
    assert exporter["depends_on"]["gateway"]["condition"] == "service_healthy"
    assert exporter["networks"] == ["shopmesh"] and "ports" not in exporter
    conf = (ROOT / "deploy" / "nginx" / "gateway.conf").read_text()
    status_server = conf.split("listen 8088;", 1)[1].split("\nserver {", 1)[0]
    assert "location = /stub_status" in status_server and "stub_status;" in status_server
    assert compose["gateway"]["ports"] == ["127.0.0.1:8080:8080"]
