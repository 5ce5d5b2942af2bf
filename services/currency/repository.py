"""PostgreSQL adapter of the currency ports: SQL (Core, text) and row <-> domain mapping."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.currency.domain import BASE_CURRENCY, RateVersion
from services.runtime.db import UnitOfWork


class SqlRateRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def current_version(self) -> int | None:
        row = (
            await self.conn.execute(
                text(
                    "SELECT version FROM rate_versions WHERE effective_at <= now() "
                    "ORDER BY effective_at DESC, version DESC LIMIT 1"
                )
            )
        ).first()
        return None if row is None else int(row.version)

    async def get(self, version: int) -> RateVersion | None:
        head = (
            await self.conn.execute(
                text("SELECT base_currency, effective_at FROM rate_versions WHERE version = :v"),
                {"v": version},
            )
        ).first()
        if head is None:
            return None
        rows = await self.conn.execute(
            text("SELECT currency_code, rate FROM rates WHERE version = :v"), {"v": version}
        )
        return RateVersion(
            version=version,
            effective_at=head.effective_at,
            rates={r.currency_code: Decimal(r.rate) for r in rows},
            base=head.base_currency,
        )

    async def add(self, rates: Mapping[str, Decimal], effective_at: dt.datetime | None) -> int:
        version = (
            await self.conn.execute(
                text(
                    "INSERT INTO rate_versions (base_currency, effective_at) "
                    "VALUES (:base, coalesce(:at, now())) RETURNING version"
                ),
                {"base": BASE_CURRENCY, "at": effective_at},
            )
        ).scalar_one()
        await self.conn.execute(
            text("INSERT INTO rates (version, currency_code, rate) VALUES (:v, :c, :r)"),
            [{"v": version, "c": code, "r": rate} for code, rate in rates.items()],
        )
        return int(version)


class SqlRateUnitOfWork:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqlRateRepository]:
        async with self.uow.write() as conn:
            yield SqlRateRepository(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqlRateRepository]:
        async with self.uow.read() as conn:
            yield SqlRateRepository(conn)
