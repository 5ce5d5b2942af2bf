"""An order's currency and shipping through the placement use case (fakes, no I/O): the
quote checked before the reservation, conversion after it at the quote's rate version,
and what a dead shipping or currency service leaves the order with."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

import pytest

from services.order.domain import LineItem, Money, OrderStatus, PlaceOrder
from services.order.pricing import (
    CurrencyUnavailableError,
    Pricer,
    QuoteExpiredError,
    QuoteMismatchError,
    ShippingQuote,
    ShippingUnavailableError,
    UnknownQuoteError,
)
from services.order.service import OrderService
from services.runtime.errors import InvalidArgument
from tests.unit.order.order_fakes import Clock, FakeCatalog, FakeRepo, FakeUsers
from tests.unit.order.test_order_service import ADDR, TRACE


class FakeRates:
    """EUR at 0.92 per USD (version 5, or 6 for any other version asked), like the service."""

    def __init__(self) -> None:
        self.down = False
        self.calls: list[tuple[list[Money], str, int]] = []

    async def convert(
        self, amounts: Sequence[Money], currency_code: str, rate_version: int = 0
    ) -> tuple[list[Money], int]:
        self.calls.append((list(amounts), currency_code, rate_version))
        if self.down:
            raise CurrencyUnavailableError("down")
        if currency_code != "EUR":
            raise InvalidArgument("currency_code", f"no rate for {currency_code}")
        out = []
        for m in amounts:
            value = (Decimal(m.total_nanos) * Decimal("0.92")).quantize(Decimal("1e7"))
            out.append(Money.from_nanos("EUR", int(value)))
        return out, rate_version or 5


class FakeQuotes:
    def __init__(self) -> None:
        self.down = False
        self.quotes: dict[str, ShippingQuote] = {}

    async def get_quote(self, quote_id: str) -> ShippingQuote | None:
        if self.down:
            raise ShippingUnavailableError("down")
        return self.quotes.get(quote_id)


@pytest.fixture
def world():
    catalog = FakeCatalog({"p-mug": ("Mug", Money("USD", 12, 500_000_000), 10)})
    rates, quotes, clock = FakeRates(), FakeQuotes(), Clock()
    pricer = Pricer(rates, quotes, Decimal("9.90"))
    svc = OrderService(FakeRepo(), FakeUsers("u-1"), catalog, clock=clock, pricer=pricer)
    quotes.quotes["q-1"] = ShippingQuote(
        "q-1", "FR", (LineItem("p-mug", 2),), Money("EUR", 6, 500_000_000), 7,
        clock.now + dt.timedelta(minutes=15),
    )  # fmt: skip
    return svc, catalog, rates, quotes, clock


def place(currency: str = "EUR", quote: str | None = "q-1", qty: int = 2, key="key-00001"):
    lines = (LineItem("p-mug", qty),)
    return PlaceOrder("u-1", key, lines, ADDR, TRACE, True, currency, quote)


async def test_an_order_in_euros_with_a_quote_converts_at_the_quotes_rate_version(world):
    svc, _, rates, _, _ = world
    order = await svc.place_order(place())
    assert order.status is OrderStatus.CONFIRMED
    assert (order.currency_code, order.rate_version, order.shipping_quote_id) == ("EUR", 7, "q-1")
    assert order.lines[0].converted_unit_price == Money("EUR", 11, 500_000_000)
    assert order.converted_total == Money("EUR", 23)
    assert order.shipping_cost == Money("EUR", 6, 500_000_000)
    assert order.grand_total == Money("EUR", 29, 500_000_000)
    assert order.total == Money("USD", 25)  # the catalog total keeps its meaning
    assert rates.calls == [([Money("USD", 12, 500_000_000)], "EUR", 7)]


async def test_without_a_quote_the_default_rule_is_converted_with_the_lines(world):
    svc, *_ = world
    order = await svc.place_order(place(quote=None))
    assert (order.shipping_quote_id, order.rate_version) == ("", 5)
    assert order.shipping_cost == Money("EUR", 9, 110_000_000)  # 9.90 x 0.92 = 9.108
    usd = await svc.place_order(place(currency="", quote=None, key="key-00002"))
    assert (usd.currency_code, usd.shipping_cost) == ("USD", Money("USD", 9, 900_000_000))


@pytest.mark.parametrize(
    "change,error",
    [
        (lambda q: q, None),
        (lambda q: dataclasses.replace(q, country_code="DE"), QuoteMismatchError),
        (lambda q: dataclasses.replace(q, lines=(LineItem("p-mug", 1),)), QuoteMismatchError),
        (lambda q: dataclasses.replace(q, price=Money("GBP", 5)), QuoteMismatchError),
        (lambda q: dataclasses.replace(q, expires_at=q.expires_at - dt.timedelta(hours=1)),
         QuoteExpiredError),
        (lambda q: None, UnknownQuoteError),
    ],
)  # fmt: skip
async def test_a_quote_must_match_the_order_and_a_refused_one_reserves_nothing(
    world, change, error
):
    svc, catalog, _, quotes, _ = world
    changed = change(quotes.quotes["q-1"])
    if changed is None:
        del quotes.quotes["q-1"]
    else:
        quotes.quotes["q-1"] = changed
    if error is None:
        assert (await svc.place_order(place())).shipping_quote_id == "q-1"
        return
    with pytest.raises(error) as err:
        await svc.place_order(place())
    assert "shipping_quote_id" in str(err.value)
    assert catalog.stock("p-mug") == 10 and not catalog.reservations


async def test_a_dead_shipping_service_places_the_order_at_the_default_rule(world):
    svc, _, _, quotes, _ = world
    quotes.down = True
    order = await svc.place_order(place())
    assert order.status is OrderStatus.CONFIRMED and order.shipping_quote_id == ""
    assert order.shipping_cost == Money("EUR", 9, 110_000_000)


async def test_a_dead_currency_service_places_the_order_in_the_catalog_currency(world):
    svc, _, rates, _, _ = world
    rates.down = True
    order = await svc.place_order(place())
    assert (order.currency_code, order.rate_version, order.shipping_quote_id) == ("USD", 0, "")
    assert order.grand_total == Money("USD", 34, 900_000_000)  # 25.00 + the default 9.90


async def test_a_currency_without_a_rate_names_the_field_and_releases_the_stock(world):
    svc, catalog, *_ = world
    with pytest.raises(InvalidArgument) as err:
        await svc.place_order(place(currency="CHF", quote=None))
    assert err.value.field == "currency_code"
    assert catalog.stock("p-mug") == 10


async def test_a_replay_returns_the_same_priced_order_and_another_currency_is_refused(world):
    svc, *_ = world
    first = await svc.place_order(place())
    again = await svc.place_order(place())
    assert again == first
    with pytest.raises(InvalidArgument) as err:
        await svc.place_order(place(currency="GBP"))
    assert err.value.field == "idempotency_key"
