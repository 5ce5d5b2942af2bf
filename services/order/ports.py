"""What the order use cases need from the outside world, as Protocols.

Stdlib and domain only. Adapters: clients.py (gRPC to user and product), repository.py
(motor / FerretDB), outbox.py (Kafka); unit tests pass in-memory fakes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.order.domain import LineItem, Money, Order, OrderLine, OrderStatus
from services.order.pricing import ShippingQuote


class UserDirectory(Protocol):
    async def user_exists(self, user_id: str) -> bool:
        """True when the user exists. Raises UserServiceUnavailableError when it cannot tell."""
        ...


class Catalog(Protocol):
    async def reserve_stock(self, order_id: str, items: Sequence[LineItem]) -> list[OrderLine]:
        """Reserve every item for the order, all or nothing, idempotent by order id; returns
        the lines at catalog prices. Raises UnknownProductError / OutOfStockError when nothing
        was reserved, CatalogUnavailableError when the outcome is unknown."""
        ...

    async def release_stock(self, order_id: str) -> bool:
        """Give back what the order reserved (idempotent). Raises CatalogUnavailableError."""
        ...


class Rates(Protocol):
    async def convert(
        self, amounts: Sequence[Money], currency_code: str, rate_version: int = 0
    ) -> tuple[list[Money], int]:
        """`amounts` in `currency_code` with that rate version (0: the one in effect), and
        the version used. Raises InvalidArgument("currency_code") for a currency without a
        rate, CurrencyUnavailableError when the currency service cannot answer."""
        ...


class Quotes(Protocol):
    async def get_quote(self, quote_id: str) -> ShippingQuote | None:
        """The quote, expired or not; None when unknown. Raises ShippingUnavailableError."""
        ...


@dataclass(frozen=True)
class Cursor:
    """Position in a user's newest-first order list."""

    created_at: dt.datetime
    order_id: str


class OrderRepository(Protocol):
    async def add(self, order: Order) -> bool:
        """Insert a new (PENDING) order; False when the user already has an order under that
        idempotency key (the unique index decides, so racing inserts converge)."""
        ...

    async def get(self, order_id: str) -> Order | None: ...

    async def get_by_key(self, user_id: str, idempotency_key: str) -> Order | None: ...

    async def save(self, order: Order) -> bool:
        """Write the order's state and append its new events in ONE document update, if the
        stored version is still `order.version` (then bump it and clear `order.events`).
        False when someone changed the order meanwhile: reload and decide again."""
        ...

    async def retire_key(self, order: Order) -> None:
        """Free the idempotency key of a FAILED order so a retry can place a new one."""
        ...

    async def mark_released(self, order_id: str) -> None:
        """Clear release_pending after ReleaseStock succeeded."""
        ...

    async def delete_failed(self, order_id: str) -> bool:
        """Remove a FAILED tombstone."""
        ...

    async def list_by_user(self, user_id: str, limit: int, after: Cursor | None) -> list[Order]:
        """Visible orders of a user, newest first, strictly after the cursor."""
        ...

    async def find_stale(
        self, statuses: Sequence[OrderStatus], updated_before: dt.datetime, limit: int
    ) -> list[Order]: ...

    async def find_release_pending(
        self, updated_before: dt.datetime, limit: int
    ) -> list[Order]: ...


class PlacementObserver(Protocol):
    """Outcome counters (Prometheus in production); the core only reports."""

    def placed(self, replayed: bool) -> None: ...

    def failed(self, reason: str) -> None: ...


class NoObserver:
    def placed(self, replayed: bool) -> None:
        pass

    def failed(self, reason: str) -> None:
        pass
