"""Product catalog domain: money, products, categories, stock reservations and their errors.

Stdlib only (plus the runtime's error base classes, which are plain exceptions).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from services.runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)

NANOS = 1_000_000_000


@dataclass(frozen=True, order=True)
class Money:
    """An amount as units + nanos (google.type.Money): prices never pass through floats."""

    currency: str
    units: int
    nanos: int = 0

    def __post_init__(self) -> None:
        if not -NANOS < self.nanos < NANOS:
            raise ValueError("nanos out of range")
        if (self.units > 0 and self.nanos < 0) or (self.units < 0 and self.nanos > 0):
            raise ValueError("units and nanos must have the same sign")

    @property
    def amount(self) -> Decimal:
        return Decimal(self.units) + Decimal(self.nanos) / NANOS

    @classmethod
    def from_decimal(cls, currency: str, amount: Decimal) -> Money:
        units = int(amount)  # truncates toward zero, so nanos keep the sign of units
        nanos = int((amount - units) * NANOS)
        return cls(currency, units, nanos)

    def times(self, n: int) -> Money:
        return Money.from_decimal(self.currency, self.amount * n)


class ProductSort(enum.Enum):
    NAME = "name"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"
    NEWEST = "newest"


@dataclass(frozen=True)
class Product:
    id: str
    sku: str
    name: str
    description: str
    category: str
    price: Money
    image_urls: tuple[str, ...]
    stock: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Category:
    slug: str
    product_count: int


@dataclass(frozen=True)
class StockLine:
    product_id: str
    quantity: int


@dataclass(frozen=True)
class ReservedLine:
    product_id: str
    name: str
    quantity: int
    unit_price: Money


@dataclass(frozen=True)
class Reservation:
    order_id: str
    lines: tuple[ReservedLine, ...]
    released: bool = False
    replayed: bool = False


def merge_lines(lines: list[StockLine]) -> tuple[StockLine, ...]:
    """One line per product (quantities summed), in product-id order: every reservation
    locks rows in the same order, so two concurrent orders cannot deadlock."""
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.product_id] = totals.get(line.product_id, 0) + line.quantity
    return tuple(StockLine(pid, qty) for pid, qty in sorted(totals.items()))


# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class ListProducts:
    page_size: int = 20
    page_token: str = ""
    category: str = ""
    min_price: Money | None = None
    max_price: Money | None = None
    sort: ProductSort = ProductSort.NAME


@dataclass(frozen=True)
class SearchProducts:
    query: str
    page_size: int = 20
    page_token: str = ""


@dataclass(frozen=True)
class CreateProduct:
    sku: str
    name: str
    description: str
    category: str
    price: Money
    image_urls: tuple[str, ...] = ()
    stock: int = 0


@dataclass(frozen=True)
class UpdateProduct:
    id: str
    name: str | None = None
    description: str | None = None
    category: str | None = None
    price: Money | None = None
    stock: int | None = None
    image_urls: tuple[str, ...] | None = None  # None = keep


@dataclass(frozen=True)
class ReserveStock:
    order_id: str
    lines: tuple[StockLine, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Page:
    products: tuple[Product, ...]
    next_page_token: str


# ---------------------------------------------------------------- errors


class ProductNotFoundError(NotFound):
    def __init__(self, product_id: str) -> None:
        super().__init__(f"product {product_id!r} not found")
        self.product_id = product_id


class InsufficientStockError(FailedPrecondition):
    def __init__(self, product_id: str, wanted: int) -> None:
        super().__init__(f"not enough stock for {product_id!r} (wanted {wanted})")
        self.product_id = product_id


class SkuTakenError(AlreadyExists):
    def __init__(self, sku: str) -> None:
        super().__init__(f"sku {sku!r} already exists")


class ReservationMismatchError(FailedPrecondition):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id!r} already holds a different reservation")


class ReservationReleasedError(FailedPrecondition):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"the reservation of order {order_id!r} was released")


class InvalidPageTokenError(InvalidArgument):
    def __init__(self) -> None:
        super().__init__("page_token", "invalid or from a different query")


class NegativePriceError(InvalidArgument):
    def __init__(self, field: str = "price") -> None:
        super().__init__(field, "must not be negative")
