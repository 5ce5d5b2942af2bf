"""Where a consumed record can go, and what travels with it: the retry stages and the
dead-letter topic of each event topic (Topology), the headers that carry a record's retry
and dead-letter bookkeeping (so any instance can continue it), how a decode failure is
classified (poison or registry away), and the consumer's metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.notification.domain import (
    DependencyUnavailableError,
    NotificationError,
    UndecodableEventError,
    UnknownSchemaError,
)

# The registry client's own HTTP library: confluent-kafka imports httpx2 under the name
# httpx when it is installed (schema_registry/common/_httpx_compat.py), so "registry
# unreachable" arrives as httpx2.ConnectError, which is no httpx.HTTPError.
try:
    from confluent_kafka.schema_registry.common._httpx_compat import httpx as _registry_http

    _HTTP_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, _registry_http.HTTPError)
except ImportError:  # an older client that used httpx itself
    _HTTP_ERRORS = (httpx.HTTPError,)

# Headers we add. Retry bookkeeping travels with the record, so any instance can continue.
H_ATTEMPT = "x-retry-attempt"  # failed attempts so far
H_DUE = "x-retry-due-ms"  # epoch ms before which the retry stage must not run it
H_LAST_ERROR = "x-retry-last-error"
H_ORIGIN_TOPIC = "x-origin-topic"
H_ORIGIN_PARTITION = "x-origin-partition"
H_ORIGIN_OFFSET = "x-origin-offset"
H_DLQ_REASON = "x-dlq-reason"
H_DLQ_ERROR = "x-dlq-error"  # one line, no stack trace
H_DLQ_ATTEMPTS = "x-dlq-attempts"
H_DLQ_SOURCE_TOPIC = "x-dlq-source-topic"
H_DLQ_SOURCE_PARTITION = "x-dlq-source-partition"
H_DLQ_SOURCE_OFFSET = "x-dlq-source-offset"
H_DLQ_TIMESTAMP = "x-dlq-timestamp-ms"
OUR_HEADERS = (H_ATTEMPT, H_DUE, H_LAST_ERROR, "x-origin-", "x-dlq-", "x-replayed-")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class NotificationMetrics:
    """Counters by topic (the base event topic) and kind; registered on the service registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = r = registry
        self.consumed = Counter(
            "notification_events_consumed", "records read", ["topic", "stage", "kind"], registry=r
        )
        self.sent = Counter(
            "notification_emails_sent", "emails sent", ["topic", "kind"], registry=r
        )
        self.duplicates = Counter(
            "notification_duplicates", "events already notified (redelivery, replay)", ["topic"],
            registry=r,
        )  # fmt: skip
        self.retried = Counter(
            "notification_events_retried", "records sent to a retry stage", ["topic", "reason"],
            registry=r,
        )  # fmt: skip
        self.dead_lettered = Counter(
            "notification_events_dead_lettered", "records sent to the DLQ", ["topic", "reason"],
            registry=r,
        )  # fmt: skip
        self.lag = Gauge(
            "notification_consumer_lag", "records behind the end of the log", ["topic", "stage"],
            registry=r,
        )  # fmt: skip
        self.send_seconds = Histogram(
            "notification_send_seconds", "claim + render + SMTP + log, per email", ["kind"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.event_to_email_seconds = Histogram(
            "notification_event_to_email_seconds", "record timestamp to email sent", ["topic"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip


@dataclass(frozen=True)
class Topology:
    """Event topics and their derived retry and dead-letter topics."""

    topics: tuple[str, ...]
    retry_delays_s: tuple[float, ...]

    @property
    def stages(self) -> int:
        return len(self.retry_delays_s)

    def retry_topic(self, base: str, stage: int) -> str:
        return f"{base}.retry.{stage}"

    def dlq_topic(self, base: str) -> str:
        return f"{base}.dlq"

    def stage_topics(self, stage: int) -> list[str]:
        if stage == 0:
            return list(self.topics)
        return [self.retry_topic(t, stage) for t in self.topics]

    def base_of(self, topic: str) -> str:
        for base in self.topics:
            if topic == base or topic.startswith(base + ".retry."):
                return base
        return topic

    def all_topics(self) -> list[str]:
        out = [t for s in range(self.stages + 1) for t in self.stage_topics(s)]
        return out + [self.dlq_topic(t) for t in self.topics]


def _text(headers: Mapping[str, bytes], name: str, default: str = "") -> str:
    raw = headers.get(name)
    return raw.decode(errors="replace") if raw is not None else default


def _one_line(message: str) -> str:
    return " ".join(message.split())[:300]


def classify_decode_error(exc: Exception) -> NotificationError:
    """Why a record did not decode: poison (permanent) or the registry is away (transient)."""
    if isinstance(exc, SchemaRegistryError):
        if exc.http_status_code == 404:
            return UnknownSchemaError(f"schema not in registry: {exc.error_message}")
        if exc.http_status_code >= 500 or exc.http_status_code <= 0:
            return DependencyUnavailableError(f"registry: HTTP {exc.http_status_code}")
        return UnknownSchemaError(f"registry refused: HTTP {exc.http_status_code}")
    if isinstance(exc, (*_HTTP_ERRORS, OSError, TimeoutError)):
        return DependencyUnavailableError(f"registry unreachable: {type(exc).__name__}")
    return UndecodableEventError(f"undecodable value: {type(exc).__name__}: {exc}")
