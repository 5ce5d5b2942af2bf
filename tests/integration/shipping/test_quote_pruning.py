"""Quotes past their retention are deleted by the shipping service's pruning task, in
batches, against the real PostgreSQL primary; younger expired quotes and live ones stay
readable (an order can still be told "expired" rather than "not found")."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from services.runtime.db import Database
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.shipping.config import ShippingConfig
from services.shipping.domain import CreateQuote, QuoteLine, QuoteNotFoundError
from services.shipping.main import MIGRATIONS
from services.shipping.repository import SqlQuoteUnitOfWork
from services.shipping.service import ShippingService

pytestmark = pytest.mark.stack

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class NoConversion:
    async def convert(self, amount, currency_code):  # only USD quotes here
        raise AssertionError("no conversion expected")


async def test_quotes_past_their_retention_are_pruned_in_batches(infra):
    config = ShippingConfig.from_env(dict(os.environ))
    db = Database(config.db, Metrics("shipping-prune-test"), service="shipping-prune-test")
    await db.open()
    try:
        await migrate(db.primary, MIGRATIONS)
        clock = Clock(NOW - dt.timedelta(days=3))
        core = ShippingService(
            lambda: SqlQuoteUnitOfWork(db.unit_of_work()),
            config.rules,
            NoConversion(),
            dt.timedelta(minutes=15),
            clock=clock,
            retention=dt.timedelta(days=1),
        )
        cmd = CreateQuote(country_code="US", currency_code="", lines=(QuoteLine("p-1", 1),))
        old = [await core.create_quote(cmd) for _ in range(5)]  # expired 3 days ago
        clock.now = NOW - dt.timedelta(hours=2)
        recent = await core.create_quote(cmd)  # expired, within the retention
        clock.now = NOW
        live = await core.create_quote(cmd)

        assert await core.prune(batch=2) >= 5  # three batches of two or fewer
        for quote in old:
            with pytest.raises(QuoteNotFoundError):
                await core.get_quote(quote.id)
        assert (await core.get_quote(recent.id)).expires_at < NOW
        assert (await core.get_quote(live.id)).expires_at > NOW
        assert await core.prune() == 0  # nothing left past the retention
    finally:
        await db.close()
