"""Grafana dashboards (JSON) and provisioning, generated from the schema and the service table
(mesh/out/grafana/).

- one dashboard per service: an overview row (RED of every RPC, dependencies, database pool,
  replica routing and lag) and one row per RPC of its schema (rate by code, server-error
  ratio, latency percentiles), plus the service's own figures (outbox, emails);
- the mesh overview: Envoy (edge and per cluster) and NGINX (exporter);
- events: Kafka produce/consume, lag per partition, DLQ size, retries, outbox.

Every query names metrics the services really export; tests/unit/observability and
tests/integration/observability check each name against live /metrics output.
"""

from __future__ import annotations

from typing import Any

from mesh.api import Api, Method, Service
from mesh.prometheus import SERVER_ERROR_CODES

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
WIDTH = 24


class _Board:
    """Lays panels out left to right, rows of height 8."""

    def __init__(self, uid: str, title: str, tags: list[str]) -> None:
        self.uid, self.title, self.tags = uid, title, tags
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = 0
        self.h = 8
        self.templating: list[dict[str, Any]] = []

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y = 0, self.y + self.h
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def panel(
        self,
        title: str,
        targets: list[tuple[str, str]],
        unit: str = "short",
        width: int = 8,
        kind: str = "timeseries",
    ) -> None:
        if self.x + width > WIDTH:
            self.x, self.y = 0, self.y + self.h
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": kind,
                "title": title,
                "datasource": DATASOURCE,
                "gridPos": {"h": self.h, "w": width, "x": self.x, "y": self.y},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    {
                        "refId": chr(ord("A") + i),
                        "datasource": DATASOURCE,
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for i, (expr, legend) in enumerate(targets)
                ],
            }
        )
        self.x += width

    def render(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "tags": self.tags,
            "editable": False,
            "schemaVersion": 39,
            "version": 1,
            "time": {"from": "now-30m", "to": "now"},
            "refresh": "10s",
            "timezone": "utc",
            "templating": {"list": self.templating},
            "annotations": {"list": []},
            "panels": self.panels,
        }


def _quantiles(sel: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le) "
            f"(rate(rpc_duration_seconds_bucket{{{sel}}}[1m])))",
            f"p{round(q * 100)}",
        )
        for q in (0.5, 0.9, 0.99)
    ]


def _method_row(board: _Board, svc: Service, m: Method) -> None:
    sel = f'service="{svc.short}", method="{m.grpc_path}"'
    board.row(f"{m.name}  ({m.access}, timeout {m.timeout_ms} ms)")
    board.panel(
        f"{m.name}: calls/s by code",
        [(f"sum by (code) (rate(rpc_requests_total{{{sel}}}[1m]))", "{{code}}")],
        "reqps",
    )
    board.panel(
        f"{m.name}: server error ratio",
        [
            (
                f'sum(rate(rpc_requests_total{{{sel}, code=~"{SERVER_ERROR_CODES}"}}[1m]))'
                f" / sum(rate(rpc_requests_total{{{sel}}}[1m]))",
                "errors",
            )
        ],
        "percentunit",
    )
    board.panel(f"{m.name}: latency", _quantiles(sel), "s")


# Figures a service exports beyond the runtime's (its own registry additions).
def _own_rows(board: _Board, svc: str) -> None:
    s = f'service="{svc}"'
    if svc == "order":
        board.row("Orders and outbox")
        board.panel(
            "placed / failed per second",
            [
                (
                    f"sum by (replayed) (rate(orders_placed_total{{{s}}}[1m]))",
                    "placed {{replayed}}",
                ),
                (f"sum by (reason) (rate(orders_failed_total{{{s}}}[1m]))", "failed {{reason}}"),
            ],
            "ops",
        )
        board.panel(
            "outbox backlog and oldest age",
            [
                (f"order_outbox_backlog_events{{{s}}}", "backlog"),
                (f"order_outbox_oldest_pending_age_seconds{{{s}}}", "oldest age (s)"),
            ],
        )
        board.panel(
            "outbox publish",
            [
                (f"rate(order_outbox_events_published_total{{{s}}}[1m])", "published/s"),
                (f"rate(order_outbox_publish_failures_total{{{s}}}[1m])", "failures/s"),
            ],
            "ops",
        )
    if svc == "user":
        board.row("Outbox")
        board.panel(
            "outbox backlog and oldest age",
            [
                (f"user_outbox_backlog_events{{{s}}}", "backlog"),
                (f"user_outbox_oldest_pending_age_seconds{{{s}}}", "oldest age (s)"),
            ],
        )
        board.panel(
            "outbox publish",
            [
                (f"rate(user_outbox_events_published_total{{{s}}}[1m])", "published/s"),
                (f"rate(user_outbox_publish_failures_total{{{s}}}[1m])", "failures/s"),
            ],
            "ops",
        )
    if svc == "notification":
        board.row("Emails and consumer")
        board.panel(
            "emails sent / duplicates per second",
            [
                (f"sum by (kind) (rate(notification_emails_sent_total{{{s}}}[1m]))", "{{kind}}"),
                (f"sum(rate(notification_duplicates_total{{{s}}}[1m]))", "duplicates"),
            ],
            "ops",
        )
        board.panel(
            "retried / dead-lettered per second",
            [
                (
                    f"sum by (reason) (rate(notification_events_retried_total{{{s}}}[1m]))",
                    "retry {{reason}}",
                ),
                (
                    f"sum by (reason) (rate(notification_events_dead_lettered_total{{{s}}}[1m]))",
                    "DLQ {{reason}}",
                ),
            ],
            "ops",
        )
        board.panel(
            "send latency p99 and event-to-email p99",
            [
                (
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(notification_send_seconds_bucket{{{s}}}[5m])))",
                    "send",
                ),
                (
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(notification_event_to_email_seconds_bucket{{{s}}}[5m])))",
                    "event to email",
                ),
            ],
            "s",
        )


def service_dashboard(svc: Service) -> dict[str, Any]:
    s = f'service="{svc.short}"'
    board = _Board(f"shopmesh-{svc.short}", f"Shopmesh / {svc.short}", ["shopmesh", "service"])
    board.row("Overview")
    board.panel(
        "calls/s by method",
        [(f"sum by (method) (rate(rpc_requests_total{{{s}}}[1m]))", "{{method}}")],
        "reqps",
    )
    board.panel(
        "server error ratio by method",
        [
            (
                f'sum by (method) (rate(rpc_requests_total{{{s}, code=~"{SERVER_ERROR_CODES}"}}'
                f"[1m])) / sum by (method) (rate(rpc_requests_total{{{s}}}[1m]))",
                "{{method}}",
            )
        ],
        "percentunit",
    )
    board.panel(
        "p99 latency by method",
        [
            (
                "histogram_quantile(0.99, sum by (method, le) "
                f"(rate(rpc_duration_seconds_bucket{{{s}}}[1m])))",
                "{{method}}",
            )
        ],
        "s",
    )
    board.panel("in flight", [(f"rpc_in_flight{{{s}}}", "calls")], width=6)
    board.panel("dependencies up", [(f"dependency_up{{{s}}}", "{{name}}")], width=6)
    board.panel(
        "reads by target and reason",
        [(f"sum by (target, reason) (rate(db_reads_total{{{s}}}[1m]))", "{{target}} {{reason}}")],
        "ops",
        width=6,
    )
    board.panel(
        "replica lag and pool",
        [
            (f"db_replica_lag_bytes{{{s}}}", "replica lag (bytes)"),
            (f"db_pool_connections{{{s}}}", "{{pool}} {{state}}"),
        ],
        width=6,
    )
    _own_rows(board, svc.short)
    for m in svc.methods:
        _method_row(board, svc, m)
    return board.render()


def mesh_dashboard() -> dict[str, Any]:
    board = _Board("shopmesh-mesh", "Shopmesh / mesh (Envoy, NGINX)", ["shopmesh", "mesh"])
    board.row("NGINX gateway")
    board.panel("requests/s", [("rate(nginx_http_requests_total[1m])", "requests")], "reqps")
    board.panel(
        "connections",
        [
            ("nginx_connections_active", "active"),
            ("nginx_connections_waiting", "waiting"),
            ("rate(nginx_connections_accepted[1m])", "accepted/s"),
        ],
    )
    board.panel("up", [("nginx_up", "nginx")], kind="stat")
    board.row("Envoy clusters")
    board.panel(
        "upstream requests/s by cluster and code",
        [
            (
                "sum by (envoy_cluster_name, envoy_response_code) "
                "(rate(envoy_cluster_upstream_rq[1m]))",
                "{{envoy_cluster_name}} {{envoy_response_code}}",
            )
        ],
        "reqps",
    )
    board.panel(
        "upstream p99 latency by cluster",
        [
            (
                "histogram_quantile(0.99, sum by (envoy_cluster_name, le) "
                "(rate(envoy_cluster_upstream_rq_time_bucket[1m])))",
                "{{envoy_cluster_name}}",
            )
        ],
        "ms",
    )
    board.panel(
        "retries, healthy hosts, ejections",
        [
            (
                "sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq_retry[1m]))",
                "retries/s {{envoy_cluster_name}}",
            ),
            ("envoy_cluster_membership_healthy", "healthy {{envoy_cluster_name}}"),
            (
                "envoy_cluster_outlier_detection_ejections_active",
                "ejected {{envoy_cluster_name}}",
            ),
        ],
    )
    board.row("Envoy listeners")
    board.panel(
        "downstream requests/s by listener",
        [
            (
                "sum by (envoy_http_conn_manager_prefix) "
                "(rate(envoy_http_downstream_rq_total[1m]))",
                "{{envoy_http_conn_manager_prefix}}",
            )
        ],
        "reqps",
        width=12,
    )
    board.panel(
        "active connections",
        [
            (
                "sum by (envoy_http_conn_manager_prefix) (envoy_http_downstream_cx_active)",
                "{{envoy_http_conn_manager_prefix}}",
            )
        ],
        width=12,
    )
    return board.render()


def events_dashboard() -> dict[str, Any]:
    board = _Board("shopmesh-events", "Shopmesh / events (Kafka)", ["shopmesh", "kafka"])
    board.row("Produce and consume")
    board.panel(
        "produced/s by topic and result",
        [
            (
                "sum by (topic, result) (rate(kafka_produced_total[1m]))",
                "{{topic}} {{result}}",
            )
        ],
        "ops",
    )
    board.panel(
        "produce p99 (send to ack)",
        [
            (
                "histogram_quantile(0.99, sum by (topic, le) "
                "(rate(kafka_produce_seconds_bucket[1m])))",
                "{{topic}}",
            )
        ],
        "s",
    )
    board.panel(
        "consumed/s by service and topic",
        [("sum by (service, topic) (rate(kafka_consumed_total[1m]))", "{{service}} {{topic}}")],
        "ops",
    )
    board.row("Lag, retries, dead letters")
    board.panel(
        "consumer lag per partition",
        [("kafka_consumer_lag", "{{group}} {{topic}}[{{partition}}]")],
    )
    board.panel(
        "DLQ size",
        [('kafka_topic_messages{topic=~".+\\\\.dlq"}', "{{topic}}")],
    )
    board.panel(
        "retries and dead letters per second",
        [
            (
                "sum by (topic, reason) (rate(notification_events_retried_total[1m]))",
                "retry {{topic}} {{reason}}",
            ),
            (
                "sum by (topic, reason) (rate(notification_events_dead_lettered_total[1m]))",
                "DLQ {{topic}} {{reason}}",
            ),
        ],
        "ops",
    )
    board.row("Outbox")
    board.panel(
        "backlog and oldest age",
        [
            ("order_outbox_backlog_events", "order backlog"),
            ("order_outbox_oldest_pending_age_seconds", "order oldest (s)"),
            ("user_outbox_backlog_events", "user backlog"),
            ("user_outbox_oldest_pending_age_seconds", "user oldest (s)"),
        ],
        width=12,
    )
    board.panel(
        "published and failed per second",
        [
            ("rate(order_outbox_events_published_total[1m])", "order published"),
            ("rate(order_outbox_publish_failures_total[1m])", "order failed"),
            ("rate(user_outbox_events_published_total[1m])", "user published"),
            ("rate(user_outbox_publish_failures_total[1m])", "user failed"),
        ],
        "ops",
        width=12,
    )
    return board.render()


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
