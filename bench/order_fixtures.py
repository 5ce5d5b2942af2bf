"""What the order benchmarks share: where FerretDB and Kafka are, and confirmed orders stored
the way the order service stores them (the PENDING insert, then the confirmation)."""

from __future__ import annotations

import datetime as dt
import uuid

from services.order.domain import Address, LineItem, Money, Order, OrderLine, PlaceOrder
from services.order.repository import MongoOrders
from services.runtime.kafka import KafkaConfig

MONGO = "mongodb://127.0.0.1:27017/"
KAFKA = KafkaConfig(client_id="order-bench")
ADDR = Address("Ada", "1 Main St", "Lyon", "69001", "FR")


def confirmed_order(user_id: str, n: int) -> tuple[Order, list[OrderLine]]:
    """A new order of one line and the catalog line that confirms it (call order.confirm
    with it, after storing the PENDING order when the store's path is measured too)."""
    cmd = PlaceOrder(user_id, f"bench-{uuid.uuid4().hex}", (LineItem("p-1", 1),), ADDR)
    order = Order.start(uuid.uuid4().hex, cmd, cmd.lines, dt.datetime.now(dt.UTC))
    return order, [OrderLine("p-1", f"Thing {n}", 1, Money("USD", 3, 0))]


async def seed_confirmed(repo: MongoOrders, n: int, user_id: str = "u-bench") -> list[str]:
    ids = []
    for i in range(n):
        order, lines = confirmed_order(user_id, i)
        await repo.add(order)
        order.confirm(lines, dt.datetime.now(dt.UTC), None)
        await repo.save(order)
        ids.append(order.id)
    return ids
