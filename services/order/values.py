"""The order's value objects: money, addresses, trace context, line items and lines, and
the order statuses with the transitions they allow (FORWARD, CANCELLABLE). Stdlib only."""

from __future__ import annotations

import enum
from dataclasses import dataclass

NANOS = 1_000_000_000


@dataclass(frozen=True)
class Money:
    """An amount in one currency, as units + nanos (same sign), like shop.common.v1.Money."""

    currency_code: str
    units: int
    nanos: int = 0

    @classmethod
    def from_nanos(cls, currency_code: str, total: int) -> Money:
        units = int(total / NANOS)  # truncate toward zero so nanos keep the sign of units
        return cls(currency_code, units, total - units * NANOS)

    @property
    def total_nanos(self) -> int:
        return self.units * NANOS + self.nanos

    def times(self, quantity: int) -> Money:
        return Money.from_nanos(self.currency_code, self.total_nanos * quantity)

    def plus(self, other: Money) -> Money:
        if other.currency_code != self.currency_code:
            raise ValueError(f"cannot add {other.currency_code} to {self.currency_code}")
        return Money.from_nanos(self.currency_code, self.total_nanos + other.total_nanos)


@dataclass(frozen=True)
class Address:
    recipient_name: str
    line1: str
    city: str
    postal_code: str
    country_code: str
    line2: str = ""
    region: str = ""


@dataclass(frozen=True)
class Trace:
    """W3C trace context of the request, stored with its events so consumers continue it."""

    traceparent: str
    tracestate: str = ""


@dataclass(frozen=True)
class LineItem:
    """What the shopper asks for: a product and a quantity. No price: prices come from the
    catalog at reservation time, never from the client."""

    product_id: str
    quantity: int


@dataclass(frozen=True)
class OrderLine:
    """A reserved line at the catalog price it was sold at, and that price in the order's
    currency (None: an order stored before orders had a currency)."""

    product_id: str
    product_name: str
    quantity: int
    unit_price: Money
    converted_unit_price: Money | None = None

    @property
    def line_total(self) -> Money:
        return self.unit_price.times(self.quantity)

    @property
    def converted_line_total(self) -> Money:
        return (self.converted_unit_price or self.unit_price).times(self.quantity)


class OrderStatus(enum.Enum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"
    # A placement that did not complete. Kept as a tombstone (invisible to the API) until the
    # sweeper has released its stock for good, because a racing request may still reserve.
    FAILED = "FAILED"


FORWARD = (OrderStatus.CONFIRMED, OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED)
CANCELLABLE = {OrderStatus.PENDING, OrderStatus.CONFIRMED, OrderStatus.PAID}
