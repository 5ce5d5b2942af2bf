"""Shipping core: zone rules from data and quotes (no I/O: fakes of the ports)."""

from __future__ import annotations

import datetime as dt
from contextlib import asynccontextmanager
from decimal import Decimal

import pytest
import yaml

from services.runtime.errors import InvalidArgument
from services.shipping.config import RULES
from services.shipping.domain import CreateQuote, Money, QuoteLine, Rules
from services.shipping.service import ShippingService


def rules() -> Rules:
    return Rules.parse(yaml.safe_load(RULES.read_text()))


def test_the_shipped_rules_price_by_zone_base_plus_per_unit():
    r = rules()
    assert r.price("US", 2) == (r.zone_of("US"), Money("USD", 5, 990_000_000))
    assert r.price("DE", 3)[1] == Money("USD", 12, 900_000_000)
    assert r.price("NO", 1)[0].name == "europe"  # "NO" quoted in the YAML, not false
    assert r.price("BR", 1)[1] == Money("USD", 21, 900_000_000)  # the "*" zone


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"zones": {"a": {"countries": ["US"], "base": "1", "per_unit": "1"}}},  # no "*"
        {"zones": {"a": {"countries": ["*"], "base": "x", "per_unit": "1"}}},
        {"zones": {"a": {"countries": ["*"], "base": "-1", "per_unit": "1"}}},
        {"zones": {"a": {"countries": ["*", False], "base": "1", "per_unit": "1"}}},
    ],
)
def test_bad_rules_are_refused(data):
    with pytest.raises(ValueError):
        Rules.parse(data)


class FakeRepo:
    def __init__(self) -> None:
        self.quotes: dict = {}

    async def add(self, quote) -> None:
        self.quotes[quote.id] = quote

    async def get(self, quote_id):
        return self.quotes.get(quote_id)


class FakeUow:
    def __init__(self, repo: FakeRepo) -> None:
        self.repo = repo

    @asynccontextmanager
    async def write(self):
        yield self.repo

    @asynccontextmanager
    async def read(self):
        yield self.repo


class HalfConverter:
    async def convert(self, amount: Money, currency_code: str):
        total = (Decimal(amount.units) + Decimal(amount.nanos) / 10**9) / 2
        return Money.of(currency_code, total), 9


NOW = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)


def service(repo: FakeRepo) -> ShippingService:
    return ShippingService(
        lambda: FakeUow(repo), rules(), HalfConverter(), dt.timedelta(minutes=15), lambda: NOW
    )


async def test_a_quote_merges_lines_converts_and_expires():
    repo = FakeRepo()
    q = await service(repo).create_quote(
        CreateQuote("DE", (QuoteLine("a", 1), QuoteLine("b", 2), QuoteLine("a", 1)), "EUR")
    )
    assert q.lines == (QuoteLine("a", 2), QuoteLine("b", 2))
    assert (q.price, q.rate_version, q.zone) == (Money("EUR", 6, 950_000_000), 9, "europe")
    assert q.expires_at == NOW + dt.timedelta(minutes=15)
    assert await service(repo).get_quote(q.id) == q
    base = await service(repo).create_quote(CreateQuote("DE", (QuoteLine("a", 4),)))
    assert (base.price, base.rate_version) == (Money("USD", 13, 900_000_000), 0)


async def test_a_bad_country_names_the_field():
    with pytest.raises(InvalidArgument) as err:
        await service(FakeRepo()).create_quote(CreateQuote("de", (QuoteLine("a", 1),)))
    assert err.value.field == "country_code"
