"""User outbox metrics on the runtime's Prometheus registry.

Named like the order service's (services/order/metrics.py) with the owner's prefix:
`user_outbox_backlog_events`, `user_outbox_oldest_pending_age_seconds`,
`user_outbox_events_published_total`, `user_outbox_publish_failures_total`. Prometheus adds
the `service` label; the ShopOutboxStale alert and the mesh dashboard read both services'.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class UserOutboxMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.backlog = Gauge(
            "user_outbox_backlog_events", "user events not yet published", registry=r
        )
        self.oldest_age = Gauge(
            "user_outbox_oldest_pending_age_seconds",
            "age of the oldest unpublished user event",
            registry=r,
        )
        self.events_published = Counter(
            "user_outbox_events_published", "events acknowledged by Kafka", registry=r
        )
        self.publish_failures = Counter(
            "user_outbox_publish_failures", "events whose publish failed (retried)", registry=r
        )
