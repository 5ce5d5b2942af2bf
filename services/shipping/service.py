"""Shipping use cases: make a quote, read one, prune the long-expired ones.

Stdlib, domain and ports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from services.shipping.domain import (
    BASE_CURRENCY,
    CreateQuote,
    Quote,
    QuoteNotFoundError,
    Rules,
    merge_lines,
    new_quote_id,
    validate,
)
from services.shipping.ports import Converter, QuoteUnitOfWork


def utcnow() -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class ShippingService:
    def __init__(
        self,
        uow: Callable[[], QuoteUnitOfWork],
        rules: Rules,
        converter: Converter,
        ttl: dt.timedelta,
        clock: Callable[[], dt.datetime] = utcnow,
        retention: dt.timedelta = dt.timedelta(days=1),
    ) -> None:
        self.uow = uow
        self.rules = rules
        self.converter = converter
        self.ttl = ttl
        self.clock = clock
        self.retention = retention

    async def create_quote(self, cmd: CreateQuote) -> Quote:
        validate(cmd)
        lines = merge_lines(cmd.lines)
        zone, price = self.rules.price(cmd.country_code, sum(ln.quantity for ln in lines))
        version = 0
        currency = cmd.currency_code or BASE_CURRENCY
        if currency != BASE_CURRENCY:
            price, version = await self.converter.convert(price, currency)
        now = self.clock()
        quote = Quote(
            id=new_quote_id(),
            country_code=cmd.country_code,
            lines=lines,
            price=price,
            rate_version=version,
            zone=zone.name,
            created_at=now,
            expires_at=now + self.ttl,
        )
        async with self.uow().write() as repo:
            await repo.add(quote)
        return quote

    async def prune(self, batch: int = 1000) -> int:
        """Delete the quotes that expired more than `retention` ago, in batches of `batch`;
        returns how many. An order can no longer name them; until then GetQuote still tells
        "expired" from "never existed"."""
        before = self.clock() - self.retention
        total = 0
        while True:
            async with self.uow().write() as repo:
                deleted = await repo.delete_expired(before, batch)
            total += deleted
            if deleted < batch:
                return total

    async def get_quote(self, quote_id: str) -> Quote:
        async with self.uow().read() as repo:
            quote = await repo.get(quote_id)
        if quote is None:
            raise QuoteNotFoundError(quote_id)
        return quote
