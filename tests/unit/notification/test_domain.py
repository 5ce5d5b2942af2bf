"""Which email for which event, formatting, addresses and the claim rule."""

from datetime import UTC, datetime, timedelta

import pytest

from services.notification.domain import (
    Claim,
    InvalidAddressError,
    Kind,
    LogEntry,
    LogStatus,
    Money,
    OrderLine,
    OrderPlaced,
    OrderStatus,
    OrderStatusChanged,
    OrderSummary,
    UserRegistered,
    check_address,
    decide_claim,
    kind_for,
    message_id_for,
    subject_for,
)

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)
STALE = timedelta(minutes=2)


def _changed(status: OrderStatus) -> OrderStatusChanged:
    return OrderStatusChanged("e1", NOW, "o1", "u1", OrderStatus.CONFIRMED, status)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (OrderStatus.PAID, Kind.ORDER_STATUS),
        (OrderStatus.SHIPPED, Kind.ORDER_STATUS),
        (OrderStatus.DELIVERED, Kind.ORDER_STATUS),
        (OrderStatus.CANCELLED, Kind.ORDER_CANCELLED),
        (OrderStatus.CONFIRMED, None),
        (OrderStatus.PENDING, None),
        (OrderStatus.UNKNOWN, None),
    ],
)
def test_status_change_email_kind(status, kind):
    assert kind_for(_changed(status)) is kind


def test_placed_and_registered_kinds():
    placed = OrderPlaced("e", NOW, "o", "u", (), Money("USD", 1))
    assert kind_for(placed) is Kind.ORDER_CONFIRMED
    assert kind_for(UserRegistered("e", NOW, "u", "a@b.co", "A")) is Kind.WELCOME


def test_money_and_line_totals_are_exact():
    price = Money("EUR", 19, 990_000_000)
    assert str(price) == "EUR 19.99"
    assert str(OrderLine("Mug", 3, price).line_total) == "EUR 59.97"
    assert str(Money("USD", -1, -500_000_000)) == "USD -1.50"


def test_subject_carries_order_number_and_total():
    order = OrderSummary("ord-42", Money("USD", 12, 500_000_000))
    assert (
        subject_for(Kind.ORDER_CONFIRMED, order, None) == "Order ord-42 confirmed - total USD 12.50"
    )
    shipped = subject_for(Kind.ORDER_STATUS, order, OrderStatus.SHIPPED)
    assert "ord-42" in shipped and "shipped" in shipped and "USD 12.50" in shipped
    assert "cancelled" in subject_for(Kind.ORDER_CANCELLED, order, OrderStatus.CANCELLED)


def test_message_id_is_deterministic_per_event():
    assert message_id_for("abc", "x.test") == message_id_for("abc", "x.test") == "<abc@x.test>"
    assert message_id_for("abc", "x.test") != message_id_for("abd", "x.test")


@pytest.mark.parametrize("good", ["a@b.co", "first.last+tag@mail.example.org"])
def test_deliverable_addresses(good):
    assert check_address(good) == good


@pytest.mark.parametrize(
    "bad", ["", "no-at", "a@nodot", "a b@c.de", "a@b.co\r\nBcc: x@y.z", "@b.co", "a@@b.co"]
)
def test_undeliverable_addresses_are_permanent(bad):
    with pytest.raises(InvalidAddressError):
        check_address(bad)


def _entry(status: LogStatus, age: timedelta) -> LogEntry:
    return LogEntry("e", status, NOW - age)


def test_claim_rules():
    assert decide_claim(None, NOW, STALE) is Claim.CLAIMED
    assert decide_claim(_entry(LogStatus.SENT, timedelta(days=9)), NOW, STALE) is Claim.ALREADY_SENT
    assert decide_claim(_entry(LogStatus.RETRYING, timedelta(0)), NOW, STALE) is Claim.CLAIMED
    assert decide_claim(_entry(LogStatus.FAILED, timedelta(0)), NOW, STALE) is Claim.CLAIMED
    live = LogStatus.SENDING
    assert decide_claim(_entry(live, timedelta(seconds=5)), NOW, STALE) is Claim.HELD
    # its worker died: taken over (at-least-once, same Message-ID)
    assert decide_claim(_entry(live, STALE), NOW, STALE) is Claim.CLAIMED


@pytest.mark.parametrize("units", [0, 1, 7, 19, 123456789])
def test_money_text_is_the_decimal_amount_rounded_half_to_even(units: int):
    """str(Money) is integer arithmetic; it must print exactly what the Decimal amount does,
    the half-cent ties (x.xx5) included."""
    nanos_cases = [
        *(0, 1, 4_999_999, 5_000_000, 5_000_001, 15_000_000, 25_000_000, 125_000_000),
        *(135_000_000, 990_000_000, 994_999_999, 995_000_000, 999_999_999, 10_000_000),
    ]
    for nanos in nanos_cases:
        m = Money("EUR", units, nanos)
        assert str(m) == f"EUR {m.amount}", (units, nanos)
