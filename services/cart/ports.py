"""What the cart use cases need from storage. Stdlib + domain only."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from services.cart.domain import Cart


class CartReader(Protocol):
    async def get(self, user_id: str) -> Cart:
        """The cart as stored; an empty one when the shopper has none."""
        ...


class CartRepository(CartReader, Protocol):
    async def get_for_update(self, user_id: str) -> Cart:
        """The cart, locked until the unit of work ends: concurrent changes to one cart
        (two tabs, the OrderPlaced consumer) queue instead of losing each other's lines."""
        ...

    async def save(self, before: Cart, after: Cart) -> Cart:
        """Store `after` (read as `before` by get_for_update); returns it as stored."""
        ...

    async def first_time(self, event_id: str) -> bool:
        """Record an event as handled; False when it was before (a redelivery)."""
        ...


class CartSwapper(Protocol):
    """A change without a lock: read the cart as stored, then store the new lines only if
    it still holds what was read (compare-and-set)."""

    async def current(self, user_id: str) -> Cart:
        """The cart as committed now (the primary's); an empty one when there is none."""
        ...

    async def swap(self, before: Cart, after: Cart) -> Cart | None:
        """Store `after` if the cart still holds `before`'s lines; returns it as stored, or
        None when another change came first (nothing is written)."""
        ...


class CartUnitOfWork(Protocol):
    def write(self) -> AbstractAsyncContextManager[CartRepository]: ...

    def swap(self, user_id: str) -> AbstractAsyncContextManager[CartSwapper]:
        """Each statement of the block commits on its own: no transaction round trips.
        Blocks for one cart in one process run one at a time (queued in the process, not
        in the store), so they lose races only to other processes."""
        ...

    def read(self) -> AbstractAsyncContextManager[CartReader]: ...
