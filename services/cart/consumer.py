"""The OrderPlaced consumer: takes what was ordered out of the shopper's cart.

The runtime's ordered pipeline (services/runtime/kafka/pipeline.py) reads shop.orders.v1 in
the cart's own group (CART_GROUP_ID), one record at a time per partition: poison goes to
<topic>.dlq at once, anything else (the cart database or the registry away) is retried in
place, backing off up to CART_RETRY_MAX_S. In place, because the retry topics of
shop.orders.v1 are read by notification's groups, which must not see the cart's copies, and
the cart has no other dependency a retry stage could wait out. The cart database records each
applied event id in the same transaction as the change (service.order_placed), so a
redelivery changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry

from services.cart import service
from services.cart.domain import OrderPlaced
from services.cart.events import order_placed
from services.cart.ports import CartUnitOfWork
from services.runtime.kafka import ConsumedEvent, EventConsumer, EventProducer
from services.runtime.kafka.pipeline import ConsumerMetrics, OrderedConsumer


class CartEventMetrics(ConsumerMetrics):
    """cart_order_events by outcome, cart_order_event_failures."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(
            registry, "cart_order_event", "shop.orders.v1",
            "applied, duplicate, ignored, dead_lettered",
        )  # fmt: skip


class OrderPlacedHandler:
    """Each OrderPlaced event in its own transaction of the cart database."""

    def __init__(self, uow: Callable[[], CartUnitOfWork]) -> None:
        self.uow = uow

    def decode(self, ev: ConsumedEvent) -> OrderPlaced | None:
        return order_placed(ev.name, ev.value)  # MalformedEventError is poison

    async def apply(self, events: list[OrderPlaced]) -> Mapping[str, int]:
        applied = 0
        for event in events:
            applied += await service.order_placed(event, self.uow())
        return {"applied": applied, "duplicate": len(events) - applied}


class OrderPlacedConsumer(OrderedConsumer[OrderPlaced]):
    """The pipeline over the cart's handler."""

    def __init__(
        self,
        consumer: EventConsumer,
        producer: EventProducer,
        uow: Callable[[], CartUnitOfWork],
        metrics: CartEventMetrics,
        *,
        dlq_topic: str,
        group_id: str,
        max_batch: int = 200,
        retry_max_s: float = 5.0,
    ) -> None:
        super().__init__(
            consumer, producer, OrderPlacedHandler(uow), metrics,
            dlq_topic=dlq_topic, group_id=group_id, max_batch=max_batch, retry_max_s=retry_max_s,
        )  # fmt: skip
