"""Cart domain: one shopper's cart, its limits, and what an order placed takes out of it.

Stdlib only (plus the runtime's error base classes, which are plain exceptions). The
limits are the order schema's (PlaceOrderRequest: at most 50 lines of 1..100 units), so
any cart can be ordered as it stands; the cart schema repeats them as buf.validate rules
on each request, and the checks here are the ones a single request cannot see (a line's
total after an add, the cart's line count).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from services.runtime.errors import FailedPrecondition, InvalidArgument

MAX_LINES = 50
MAX_QUANTITY = 100


@dataclass(frozen=True)
class CartItem:
    product_id: str
    quantity: int


class CartFullError(FailedPrecondition):
    def __init__(self) -> None:
        super().__init__(f"the cart holds {MAX_LINES} products, its most: remove one first")


class LineLimitError(InvalidArgument):
    def __init__(self, product_id: str, total: int) -> None:
        super().__init__(
            "quantity", f"{product_id} would have {total} units, more than {MAX_QUANTITY}"
        )


@dataclass(frozen=True)
class Cart:
    """The lines in the order their products were first added (the storefront's order)."""

    user_id: str
    items: tuple[CartItem, ...] = ()
    updated_at: datetime | None = None

    def quantity_of(self, product_id: str) -> int:
        return next((i.quantity for i in self.items if i.product_id == product_id), 0)

    def add(self, product_id: str, quantity: int) -> Cart:
        total = self.quantity_of(product_id) + quantity
        if total > MAX_QUANTITY:
            raise LineLimitError(product_id, total)
        return self.set_quantity(product_id, total)

    def set_quantity(self, product_id: str, quantity: int) -> Cart:
        """`quantity` 0 removes the line; a new product is appended (if the cart has room)."""
        if quantity <= 0:
            return self.remove(product_id)
        if quantity > MAX_QUANTITY:
            raise LineLimitError(product_id, quantity)
        if self.quantity_of(product_id):
            items = tuple(
                CartItem(i.product_id, quantity) if i.product_id == product_id else i
                for i in self.items
            )
            return replace(self, items=items)
        if len(self.items) >= MAX_LINES:
            raise CartFullError()
        return replace(self, items=(*self.items, CartItem(product_id, quantity)))

    def remove(self, product_id: str) -> Cart:
        return replace(self, items=tuple(i for i in self.items if i.product_id != product_id))

    def empty(self) -> Cart:
        return replace(self, items=())

    def merge(self, incoming: Iterable[CartItem]) -> tuple[Cart, tuple[str, ...]]:
        """Fold a signed-out cart in: a product in both keeps the larger quantity (so a
        repeated merge changes nothing), new products are appended while there is room.
        Returns the cart and the products left out because it was full."""
        cart, dropped = self, []
        for item in incoming:
            have = cart.quantity_of(item.product_id)
            want = min(MAX_QUANTITY, max(have, item.quantity))
            if want == have:
                continue
            if not have and len(cart.items) >= MAX_LINES:
                if item.product_id not in dropped:
                    dropped.append(item.product_id)
                continue
            cart = cart.set_quantity(item.product_id, want)
        return cart, tuple(dropped)

    def take_ordered(self, ordered: Iterable[CartItem]) -> Cart:
        """What remains once an order of these lines was placed: each ordered product's
        units come out of its line (a line ordered whole is gone). Units added after the
        checkout began stay, which emptying the whole cart would lose."""
        cart = self
        for item in ordered:
            left = cart.quantity_of(item.product_id) - item.quantity
            cart = cart.set_quantity(item.product_id, max(0, left))
        return cart


@dataclass(frozen=True)
class OrderPlaced:
    """The part of shop.events.v1.OrderPlaced the cart acts on."""

    event_id: str
    order_id: str
    user_id: str
    lines: tuple[CartItem, ...]
