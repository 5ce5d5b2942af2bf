"""Grafana dashboards (JSON) and provisioning, generated from the schema and the service table
(mesh/out/grafana/).

- one dashboard per service: an overview row (RED of every RPC, dependencies, database pool,
  replica routing and lag) and one row per RPC of its schema (rate by code, server-error
  ratio, latency percentiles), plus the service's own figures (outbox, emails);
- the mesh overview: Envoy (edge and per cluster) and NGINX (exporter);
- events: Kafka produce/consume, lag per partition, DLQ size, retries, outbox.

Every query names metrics the services really export; tests/unit/observability and
tests/integration/observability check each name against live /metrics output.

Modules: board.py (the panel grid), service_boards.py (a dashboard per service), platform_boards.py
(mesh and events dashboards); dashboards() and provisioning() here.
"""

from __future__ import annotations

from typing import Any

from mesh.api import Api
from mesh.grafana.board import DATASOURCE, WIDTH
from mesh.grafana.platform_boards import events_dashboard, mesh_dashboard
from mesh.grafana.service_boards import service_dashboard


def dashboards(api: Api) -> dict[str, dict[str, Any]]:
    """File name -> dashboard."""
    out = {f"{svc.short}.json": service_dashboard(svc) for svc in api.services}
    out["mesh.json"] = mesh_dashboard()
    out["events.json"] = events_dashboard()
    return out


def provisioning(
    prometheus_url: str = "http://127.0.0.1:9090", scrape_interval: str = "2s"
) -> dict[str, dict[str, Any]]:
    """Grafana provisioning files (relative path -> YAML document). `scrape_interval` is
    the one the Prometheus at `prometheus_url` scrapes at (Grafana's smallest step)."""
    return {
        "provisioning/datasources/shopmesh.yml": {
            "apiVersion": 1,
            "datasources": [
                {
                    "name": "Prometheus",
                    "uid": DATASOURCE["uid"],
                    "type": "prometheus",
                    "access": "proxy",
                    "url": prometheus_url,
                    "isDefault": True,
                    "jsonData": {"timeInterval": scrape_interval},
                }
            ],
        },
        "provisioning/dashboards/shopmesh.yml": {
            "apiVersion": 1,
            "providers": [
                {
                    "name": "shopmesh",
                    "folder": "Shopmesh",
                    "type": "file",
                    "allowUiUpdates": False,
                    # Where the deployment mounts mesh/out/grafana/dashboards.
                    "options": {"path": "/var/lib/grafana/dashboards"},
                }
            ],
        },
    }


__all__ = [
    "DATASOURCE",
    "WIDTH",
    "dashboards",
    "events_dashboard",
    "mesh_dashboard",
    "provisioning",
    "service_dashboard",
]
