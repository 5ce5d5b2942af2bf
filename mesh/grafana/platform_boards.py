"""The dashboards that span services: the mesh (Envoy and NGINX) and the events (Kafka
topics, consumer lag, dead letters).
"""

from __future__ import annotations

from typing import Any

from mesh.grafana.board import _Board


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
