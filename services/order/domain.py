"""Order aggregate, commands and events (its value objects: values.py; its errors:
errors.py; PlaceOrder's rules checked at the core: validation.py).

Imports only the stdlib and the order's own modules (errors: stdlib and the runtime's error
bases). The order is the unit of consistency: every change is one document write that also
carries the events it emits, so state and events can never disagree (a transactional outbox:
docs/architecture.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from services.order.errors import InvalidTransitionError, MixedCurrencyError
from services.order.values import (
    CANCELLABLE,
    FORWARD,
    Address,
    LineItem,
    Money,
    OrderLine,
    OrderStatus,
    Trace,
)

if TYPE_CHECKING:
    from services.order.pricing import Pricing


# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class PlaceOrder:
    user_id: str
    idempotency_key: str
    lines: tuple[LineItem, ...]
    shipping_address: Address | None
    trace: Trace | None = None
    # The caller is this user, with a token the platform issued them: the user exists
    # (users are never deleted), so placement skips the directory's check.
    by_the_user: bool = False
    currency_code: str = ""  # empty: the catalog's
    shipping_quote_id: str | None = None


@dataclass(frozen=True)
class CancelOrder:
    order_id: str
    reason: str = ""
    trace: Trace | None = None


@dataclass(frozen=True)
class UpdateOrderStatus:
    order_id: str
    status: OrderStatus
    trace: Trace | None = None


@dataclass(frozen=True)
class ListOrders:
    user_id: str
    page_size: int = 0
    page_token: str = ""


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Charge:
    """What the shopper is charged, in their currency (OrderPlaced's `charge`)."""

    currency_code: str
    rate_version: int
    unit_prices: tuple[Money, ...]  # per line, in the order of the lines
    shipping_quote_id: str
    shipping_cost: Money
    grand_total: Money


@dataclass(frozen=True)
class OrderPlaced:
    event_id: str
    occurred_at: dt.datetime
    order_id: str
    user_id: str
    lines: tuple[OrderLine, ...]
    total: Money
    shipping_city: str
    shipping_country_code: str
    trace: Trace | None = None
    charge: Charge | None = None


@dataclass(frozen=True)
class OrderStatusChanged:
    event_id: str
    occurred_at: dt.datetime
    order_id: str
    user_id: str
    previous_status: OrderStatus
    status: OrderStatus
    reason: str | None = None
    trace: Trace | None = None


Event = OrderPlaced | OrderStatusChanged


def request_fingerprint(cmd: PlaceOrder) -> str:
    """Hash of what the request asks for, so a reused key with a different request is
    refused instead of silently returning an unrelated order."""
    body: dict[str, object] = {
        "lines": sorted((li.product_id, li.quantity) for li in cmd.lines),
        "address": None if cmd.shipping_address is None else vars(cmd.shipping_address),
    }
    # Only when set: requests without them hash as they always did (replays keep working).
    if cmd.currency_code:
        body["currency"] = cmd.currency_code
    if cmd.shipping_quote_id is not None:
        body["quote"] = cmd.shipping_quote_id
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


def new_event_id() -> str:
    return str(uuid.uuid4())


def new_order_id() -> str:
    # Random, not derived from the key: a failed attempt's id is never reused, so a late
    # compensation (ReleaseStock by order id) can only hit the attempt it belongs to.
    return uuid.uuid4().hex


# ---------------------------------------------------------------- the aggregate


@dataclass
class Order:
    id: str
    user_id: str
    idempotency_key: str
    request_hash: str
    status: OrderStatus
    items: tuple[LineItem, ...]
    shipping_address: Address
    created_at: dt.datetime
    updated_at: dt.datetime
    lines: tuple[OrderLine, ...] = ()
    total: Money | None = None
    cancel_reason: str = ""
    # What the shopper asked for (kept from the request) ...
    requested_currency: str = ""
    requested_quote_id: str | None = None
    # ... and what the order charges, set at confirmation ("" / 0 / None on orders stored
    # before orders had a currency: they charged `total` in the catalog's currency).
    currency_code: str = ""
    rate_version: int = 0
    shipping_quote_id: str = ""
    shipping_cost: Money | None = None
    # Set in the same write that cancels or fails an order whose stock may be reserved;
    # cleared once ReleaseStock succeeded. The sweeper retries what a crash left behind.
    release_pending: bool = False
    version: int = 0
    events: list[Event] = field(default_factory=list)

    @classmethod
    def start(
        cls, order_id: str, cmd: PlaceOrder, items: tuple[LineItem, ...], now: dt.datetime
    ) -> Order:
        assert cmd.shipping_address is not None
        return cls(
            id=order_id,
            user_id=cmd.user_id,
            idempotency_key=cmd.idempotency_key,
            request_hash=request_fingerprint(cmd),
            status=OrderStatus.PENDING,
            items=items,
            shipping_address=cmd.shipping_address,
            created_at=now,
            updated_at=now,
            requested_currency=cmd.currency_code,
            requested_quote_id=cmd.shipping_quote_id,
        )

    @property
    def visible(self) -> bool:
        """FAILED placements are tombstones, never shown through the API."""
        return self.status is not OrderStatus.FAILED

    @property
    def charge_currency(self) -> str:
        """The currency the order charges in (its total's, for orders stored before)."""
        return self.currency_code or (self.total.currency_code if self.total else "")

    @property
    def converted_total(self) -> Money | None:
        return self.charged()[0]

    @property
    def grand_total(self) -> Money | None:
        return self.charged()[1]

    def charged(self) -> tuple[Money | None, Money | None]:
        """(converted_total, grand_total) from one pass over the lines (a reply needs both)."""
        if self.total is None:
            return None, None
        converted = Money.from_nanos(
            self.charge_currency,
            sum(line.converted_line_total.total_nanos for line in self.lines),
        )
        if self.shipping_cost is None:
            return converted, converted
        return converted, converted.plus(self.shipping_cost)

    def confirm(
        self,
        reserved: list[OrderLine],
        now: dt.datetime,
        trace: Trace | None,
        pricing: Pricing | None = None,
    ) -> None:
        """PENDING -> CONFIRMED at the reserved catalog prices, charged as `pricing` says
        (None: in the catalog's currency, no shipping); emits OrderPlaced."""
        if self.status is not OrderStatus.PENDING:
            raise InvalidTransitionError(self.status, OrderStatus.CONFIRMED)
        currencies = {r.unit_price.currency_code for r in reserved}
        if len(currencies) != 1:
            raise MixedCurrencyError()
        if pricing is not None:
            reserved = [
                replace(line, converted_unit_price=price)
                for line, price in zip(reserved, pricing.unit_prices, strict=True)
            ]
            self.currency_code = pricing.currency_code
            self.rate_version = pricing.rate_version
            self.shipping_quote_id = pricing.shipping_quote_id
            self.shipping_cost = pricing.shipping_cost
        self.lines = tuple(reserved)
        (currency,) = currencies
        self.total = Money.from_nanos(
            currency, sum(line.line_total.total_nanos for line in self.lines)
        )
        self.status = OrderStatus.CONFIRMED
        self.updated_at = now
        self.events.append(
            OrderPlaced(
                event_id=new_event_id(),
                occurred_at=now,
                order_id=self.id,
                user_id=self.user_id,
                lines=self.lines,
                total=self.total,
                shipping_city=self.shipping_address.city,
                shipping_country_code=self.shipping_address.country_code,
                trace=trace,
                charge=self._charge(),
            )
        )

    def _charge(self) -> Charge | None:
        grand_total = self.grand_total
        if not self.currency_code or self.shipping_cost is None or grand_total is None:
            return None  # not priced (no Pricer): the event says as much
        return Charge(
            currency_code=self.currency_code,
            rate_version=self.rate_version,
            unit_prices=tuple(ln.converted_unit_price or ln.unit_price for ln in self.lines),
            shipping_quote_id=self.shipping_quote_id,
            shipping_cost=self.shipping_cost,
            grand_total=grand_total,
        )

    def fail(self, now: dt.datetime) -> None:
        """A placement that cannot complete: no event (nothing was ever announced)."""
        if self.status is not OrderStatus.PENDING:
            raise InvalidTransitionError(self.status, OrderStatus.FAILED)
        self.status = OrderStatus.FAILED
        self.release_pending = True
        self.updated_at = now

    def cancel(self, reason: str, now: dt.datetime, trace: Trace | None) -> bool:
        """Cancel if not shipped yet; False (no change, no event) when already cancelled."""
        if self.status is OrderStatus.CANCELLED:
            return False
        if self.status not in CANCELLABLE:
            raise InvalidTransitionError(self.status, OrderStatus.CANCELLED)
        self._change(OrderStatus.CANCELLED, now, trace, reason=reason or None)
        self.cancel_reason = reason
        self.release_pending = True
        return True

    def advance(self, status: OrderStatus, now: dt.datetime, trace: Trace | None) -> bool:
        """Move forward along CONFIRMED -> PAID -> SHIPPED -> DELIVERED (steps may be skipped,
        e.g. cash on delivery); False when it already has that status."""
        if status is self.status:
            return False
        if (
            status not in FORWARD[1:]
            or self.status not in FORWARD
            or FORWARD.index(status) < FORWARD.index(self.status)
        ):
            raise InvalidTransitionError(self.status, status)
        self._change(status, now, trace)
        return True

    def _change(
        self, status: OrderStatus, now: dt.datetime, trace: Trace | None, reason: str | None = None
    ) -> None:
        self.events.append(
            OrderStatusChanged(
                event_id=new_event_id(),
                occurred_at=now,
                order_id=self.id,
                user_id=self.user_id,
                previous_status=self.status,
                status=status,
                reason=reason,
                trace=trace,
            )
        )
        self.status = status
        self.updated_at = now

    def snapshot(self) -> Order:
        """A copy without unsaved events (what a racing reader would load)."""
        return replace(self, events=[])
