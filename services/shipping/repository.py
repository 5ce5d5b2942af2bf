"""PostgreSQL adapter of the quote ports: SQL (Core, text) and row <-> domain mapping."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.db import UnitOfWork
from services.shipping.domain import Money, Quote, QuoteLine

COLS = (
    "id, country_code, lines, currency, price_units, price_nanos, rate_version, zone, "
    "created_at, expires_at"
)


class SqlQuoteRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, quote: Quote) -> None:
        await self.conn.execute(
            text(
                f"INSERT INTO quotes ({COLS}) VALUES (:id, :country, :lines, :currency, "
                ":units, :nanos, :version, :zone, :created, :expires)"
            ),
            {
                "id": quote.id,
                "country": quote.country_code,
                "lines": json.dumps([[ln.product_id, ln.quantity] for ln in quote.lines]),
                "currency": quote.price.currency_code,
                "units": quote.price.units,
                "nanos": quote.price.nanos,
                "version": quote.rate_version,
                "zone": quote.zone,
                "created": quote.created_at,
                "expires": quote.expires_at,
            },
        )

    async def get(self, quote_id: str) -> Quote | None:
        row = (
            await self.conn.execute(
                text(f"SELECT {COLS} FROM quotes WHERE id = :id"), {"id": quote_id}
            )
        ).first()
        if row is None:
            return None
        lines = row.lines if isinstance(row.lines, list) else json.loads(row.lines)
        return Quote(
            id=row.id,
            country_code=row.country_code,
            lines=tuple(QuoteLine(p, int(q)) for p, q in lines),
            price=Money(row.currency, int(row.price_units), int(row.price_nanos)),
            rate_version=int(row.rate_version),
            zone=row.zone,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    async def delete_expired(self, before: dt.datetime, limit: int) -> int:
        # Oldest first through quotes_expires_idx, a bounded batch per statement so a long
        # backlog never holds one big transaction.
        result = await self.conn.execute(
            text(
                "DELETE FROM quotes WHERE id IN (SELECT id FROM quotes WHERE expires_at < "
                ":before ORDER BY expires_at LIMIT :limit)"
            ),
            {"before": before, "limit": limit},
        )
        return int(result.rowcount or 0)


class SqlQuoteUnitOfWork:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqlQuoteRepository]:
        async with self.uow.write() as conn:
            yield SqlQuoteRepository(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqlQuoteRepository]:
        async with self.uow.read() as conn:
            yield SqlQuoteRepository(conn)
