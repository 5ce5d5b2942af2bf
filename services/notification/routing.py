"""Where a consumed record can go, and what travels with it: the retry stages and the
dead-letter topic of each event topic (Topology), the headers that carry a record's retry
bookkeeping (so any instance can continue it; the dead-letter headers and the decode
classification are the runtime's, services/runtime/kafka/dlq.py), and the consumer's metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.notification.domain import (
    DependencyUnavailableError,
    NotificationError,
    UndecodableEventError,
    UnknownSchemaError,
)
from services.runtime.kafka import dlq
from services.runtime.kafka.dlq import DLQ_PREFIX
from services.runtime.kafka.dlq import H_DLQ_SOURCE_TOPIC as H_DLQ_SOURCE_TOPIC  # replay's
from services.runtime.kafka.dlq import H_DLQ_TIMESTAMP as H_DLQ_TIMESTAMP

# Headers of the retry stages. Retry bookkeeping travels with the record, so any instance
# can continue it.
H_ATTEMPT = "x-retry-attempt"  # failed attempts so far
H_DUE = "x-retry-due-ms"  # epoch ms before which the retry stage must not run it
H_LAST_ERROR = "x-retry-last-error"
H_ORIGIN_TOPIC = "x-origin-topic"
H_ORIGIN_PARTITION = "x-origin-partition"
H_ORIGIN_OFFSET = "x-origin-offset"
OUR_HEADERS = (H_ATTEMPT, H_DUE, H_LAST_ERROR, "x-origin-", DLQ_PREFIX, "x-replayed-")

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
        return dlq.dlq_topic(base)

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


def classify_decode_error(exc: Exception) -> NotificationError:
    """Why a record did not decode (the runtime's classification, dlq.py), as the domain
    error the pipeline routes: poison (permanent) or the registry is away (transient)."""
    failure = dlq.classify_decode_error(exc)
    if failure.transient:
        return DependencyUnavailableError(failure.message)
    if failure.kind == "unknown-schema":
        return UnknownSchemaError(failure.message)
    return UndecodableEventError(failure.message)
