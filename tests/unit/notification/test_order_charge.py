"""OrderPlaced with a `charge` (the shopper's currency): the email shows the converted unit
prices, the shipping and the grand total; without one, the catalog's amounts as before."""

from __future__ import annotations

from datetime import UTC, datetime

from services.notification.domain import Kind, Money, OrderSummary, Recipient
from services.notification.events import to_domain
from services.notification.templates import JinjaRenderer

BASE = {
    "event_id": "9b2f3c1e-0000-4000-8000-000000000001",
    "occurred_at": datetime(2026, 12, 7, tzinfo=UTC),
    "order_id": "o-1",
    "user_id": "u-1",
    "lines": [
        {"product_id": "p-1", "product_name": "Mug", "quantity": 2,
         "unit_price": {"currency_code": "USD", "units": 12, "nanos": 500_000_000}},
    ],
    "total": {"currency_code": "USD", "units": 25, "nanos": 0},
    "shipping_city": "Berlin",
}  # fmt: skip
CHARGE = {
    "currency_code": "EUR",
    "rate_version": 4,
    "unit_prices": [{"currency_code": "EUR", "units": 11, "nanos": 500_000_000}],
    "shipping_quote_id": "q-1",
    "shipping_cost": {"currency_code": "EUR", "units": 10, "nanos": 950_000_000},
    "grand_total": {"currency_code": "EUR", "units": 33, "nanos": 950_000_000},
}


def test_a_charged_order_reads_in_the_shoppers_currency_with_shipping():
    event = to_domain("shop.events.v1.OrderPlaced", {**BASE, "charge": CHARGE})
    assert event.total == Money("EUR", 23)  # the lines, in the charged currency
    assert event.shipping == Money("EUR", 10, 950_000_000)
    assert event.lines[0].unit_price == Money("EUR", 11, 500_000_000)
    assert event.lines[0].line_total == Money("EUR", 23, 0)


def test_an_order_without_a_charge_reads_as_before():
    for value in (BASE, {**BASE, "charge": None}):
        event = to_domain("shop.events.v1.OrderPlaced", value)
        assert event.total == Money("USD", 25) and event.shipping is None
        assert event.lines[0].unit_price == Money("USD", 12, 500_000_000)


def test_the_confirmation_email_shows_shipping_and_the_total_charged():
    event = to_domain("shop.events.v1.OrderPlaced", {**BASE, "charge": CHARGE})
    order = OrderSummary(event.order_id, event.total, event.lines, event.shipping)
    context = {
        "recipient": Recipient("u-1", "ann@example.com", "Ann"),
        "order": order,
        "status": None,
        "reason": None,
        "shipping_city": "Berlin",
        "subject": "s",
    }
    text, html = JinjaRenderer().render(Kind.ORDER_CONFIRMED, context)
    for body in (text, html):
        assert "EUR 11.50" in body and "EUR 23.00" in body
        assert "Order total: EUR 23.00" in body and "Shipping: EUR 10.95" in body
        assert "total charged: " in body and "EUR 33.95" in body
        assert "USD" not in body
