"""PostgreSQL adapter of the co-purchase ports: SQL (Core, text) and row <-> domain mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.recommendation.domain import OrderPlaced, Suggestion
from services.runtime.db import UnitOfWork


class SqlCoPurchases:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def record(self, event: OrderPlaced) -> bool:
        claimed = (
            await self.conn.execute(
                text(
                    "INSERT INTO counted_events (event_id, order_id) VALUES (:e, :o) "
                    "ON CONFLICT DO NOTHING RETURNING event_id"
                ),
                {"e": event.event_id, "o": event.order_id},
            )
        ).first()
        if claimed is None:
            return False
        pairs = event.pairs()
        if pairs:
            # Sorted pairs: concurrent orders lock the same rows in the same order.
            await self.conn.execute(
                text(
                    "INSERT INTO co_purchases (product_id, other_id, orders) "
                    "SELECT a, b, 1 FROM unnest(CAST(:a AS text[]), CAST(:b AS text[])) AS p(a, b) "
                    "ON CONFLICT (product_id, other_id) "
                    "DO UPDATE SET orders = co_purchases.orders + 1"
                ),
                {"a": [a for a, _ in pairs], "b": [b for _, b in pairs]},
            )
        return True

    async def also_bought(self, product_id: str, limit: int) -> list[Suggestion]:
        rows = await self.conn.execute(
            text(
                "SELECT other_id, orders FROM co_purchases WHERE product_id = :p "
                "ORDER BY orders DESC, other_id LIMIT :n"
            ),
            {"p": product_id, "n": limit},
        )
        return [Suggestion(r.other_id, int(r.orders)) for r in rows]


class SqlCoPurchaseUnitOfWork:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqlCoPurchases]:
        async with self.uow.write() as conn:
            yield SqlCoPurchases(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqlCoPurchases]:
        async with self.uow.read() as conn:
            yield SqlCoPurchases(conn)
