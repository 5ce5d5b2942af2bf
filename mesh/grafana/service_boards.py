"""One dashboard per service: a row per RPC (rate, errors, latency quantiles) and the
service's own figures (database, outbox, consumer, cache).
"""

from __future__ import annotations

from typing import Any

from mesh.api import Method, Service
from mesh.grafana.board import _Board
from mesh.prometheus import SERVER_ERROR_CODES


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
