"""In-memory fakes of the cart's own ports, for the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from services.cart.domain import Cart


class MemoryCarts:
    """CartRepository and CartReader over dicts; a write commits only on a clean exit."""

    def __init__(self) -> None:
        self.carts: dict[str, Cart] = {}
        self.events: set[str] = set()
        self.writes = 0

    async def get(self, user_id: str) -> Cart:
        return self.carts.get(user_id, Cart(user_id))

    async def get_for_update(self, user_id: str) -> Cart:
        return await self.get(user_id)

    async def save(self, before: Cart, after: Cart) -> Cart:
        self.writes += 1
        stored = Cart(after.user_id, after.items, datetime.now(UTC))
        self.carts[after.user_id] = stored
        return stored

    async def first_time(self, event_id: str) -> bool:
        if event_id in self.events:
            return False
        self.events.add(event_id)
        return True


class MemoryUnitOfWork:
    def __init__(self, store: MemoryCarts) -> None:
        self.store = store

    @asynccontextmanager
    async def write(self) -> AsyncIterator[MemoryCarts]:
        carts, events = dict(self.store.carts), set(self.store.events)
        try:
            yield self.store
        except BaseException:
            self.store.carts, self.store.events = carts, events  # rollback
            raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[MemoryCarts]:
        yield self.store
