"""PostgreSQL adapter of the co-purchase ports: SQL (Core, text) and row <-> domain mapping."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.recommendation.domain import OrderPlaced, Suggestion
from services.runtime.db import UnitOfWork


class SqlCoPurchases:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def record(self, events: Sequence[OrderPlaced]) -> list[str]:
        if not events:
            return []
        rows = await self.conn.execute(
            text(
                "INSERT INTO counted_events (event_id, order_id) "
                "SELECT * FROM unnest(CAST(:e AS text[]), CAST(:o AS text[])) "
                "ON CONFLICT DO NOTHING RETURNING event_id"
            ),
            {"e": [ev.event_id for ev in events], "o": [ev.order_id for ev in events]},
        )
        counted = {r.event_id for r in rows}
        pairs: Counter[tuple[str, str]] = Counter()
        for ev in {ev.event_id: ev for ev in events if ev.event_id in counted}.values():
            pairs.update(ev.pairs())
        if pairs:
            # Sorted pairs: concurrent batches lock the same rows in the same order.
            ordered = sorted(pairs.items())
            await self.conn.execute(
                text(
                    "INSERT INTO co_purchases (product_id, other_id, orders) "
                    "SELECT * FROM unnest(CAST(:a AS text[]), CAST(:b AS text[]), "
                    "CAST(:n AS bigint[])) "
                    "ON CONFLICT (product_id, other_id) "
                    "DO UPDATE SET orders = co_purchases.orders + EXCLUDED.orders"
                ),
                {
                    "a": [a for (a, _), _ in ordered],
                    "b": [b for (_, b), _ in ordered],
                    "n": [n for _, n in ordered],
                },
            )
        return sorted(counted)

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
