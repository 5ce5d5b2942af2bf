"""The OrderPlaced consumer: counts co-purchases.

The runtime's ordered pipeline (services/runtime/kafka/pipeline.py) reads shop.orders.v1 in
recommendation's own group (RECOMMENDATION_GROUP_ID), in order per partition, and hands a
poll's consecutive OrderPlaced events of a partition to one transaction (at most
RECOMMENDATION_TX_EVENTS: one statement records the event ids, one upserts the pairs, which
is what makes a backlog drain fast). Poison goes to <topic>.dlq at once; anything else (its
database or the registry away) is retried in place, backing off up to
RECOMMENDATION_RETRY_MAX_S: no record is skipped, none counted twice (the event ids are
recorded with the counts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry

from services.recommendation import service
from services.recommendation.domain import OrderPlaced
from services.recommendation.events import order_placed
from services.recommendation.ports import CoPurchaseUnitOfWork
from services.runtime.kafka import ConsumedEvent
from services.runtime.kafka.pipeline import ConsumerMetrics


class EventMetrics(ConsumerMetrics):
    """recommendation_order_events by outcome, recommendation_order_event_failures."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(
            registry, "recommendation_order_event", "shop.orders.v1",
            "counted, duplicate, ignored, dead_lettered",
        )  # fmt: skip


class OrderPlacedHandler:
    """A run of OrderPlaced events counted in one transaction."""

    def __init__(self, uow: Callable[[], CoPurchaseUnitOfWork]) -> None:
        self.uow = uow

    def decode(self, ev: ConsumedEvent) -> OrderPlaced | None:
        return order_placed(ev.name, ev.value)  # MalformedEventError is poison

    async def apply(self, events: list[OrderPlaced]) -> Mapping[str, int]:
        counted = await service.orders_placed(events, self.uow())
        return {"counted": counted, "duplicate": len(events) - counted}
