"""Kafka topics of Shopmesh, declared once: the stack creates them, services import them.

Pure data (stdlib only) so services, tests and k8s generators can import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    retention_days: int
    replication_factor: int = 1  # one local broker; the k8s prod overlay runs 3

    @property
    def config(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_days * DAY_MS), "cleanup.policy": "delete"}


# Retry topics hold a record until its backoff elapses: stage N waits longer than stage N-1.
RETRY_STAGES = (1, 2)


def _family(base: str, partitions: int = 6) -> list[Topic]:
    """An event topic, its retry stages and its dead-letter topic."""
    return [
        Topic(base, partitions, 7),
        *(Topic(f"{base}.retry.{n}", 3, 7) for n in RETRY_STAGES),
        Topic(f"{base}.dlq", 3, 30),
    ]


ORDERS = "shop.orders.v1"
USERS = "shop.users.v1"

TOPICS: tuple[Topic, ...] = (*_family(ORDERS), *_family(USERS))


def retry_topic(base: str, stage: int) -> str:
    return f"{base}.retry.{stage}"


def dlq_topic(base: str) -> str:
    return f"{base}.dlq"
