"""Order metrics on the runtime's Prometheus registry: placement outcomes (the core's
PlacementObserver port), the outbox backlog and publish latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.runtime.metrics import LATENCY_BUCKETS


class OrderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.orders_placed = Counter(
            "orders_placed", "PlaceOrder successes (replayed = same idempotency key)",
            ["replayed"], registry=r,
        )  # fmt: skip
        self.orders_failed = Counter(
            "orders_failed", "PlaceOrder failures by reason", ["reason"], registry=r
        )
        # Read from the store by the relay of each worker process: the same figure in each,
        # so the largest (not the sum) is the service's.
        self.outbox_backlog = Gauge(
            "order_outbox_backlog_events",
            "order events not yet published",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.outbox_oldest_age = Gauge(
            "order_outbox_oldest_pending_age_seconds",
            "age of the oldest unpublished order event",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.publish_seconds = Histogram(
            "order_outbox_publish_seconds",
            "send to broker ack (acks=all) per event",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.events_published = Counter(
            "order_outbox_events_published", "events acknowledged by Kafka", registry=r
        )
        self.publish_failures = Counter(
            "order_outbox_publish_failures", "events whose publish failed (retried)", registry=r
        )

    # PlacementObserver
    def placed(self, replayed: bool) -> None:
        self.orders_placed.labels("true" if replayed else "false").inc()

    def failed(self, reason: str) -> None:
        self.orders_failed.labels(reason).inc()
