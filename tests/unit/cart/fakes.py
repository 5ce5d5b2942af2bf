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
        self.races = 0  # swaps that another change beats (see swap)
        self.race_product = "p-race"
        self.lost = 0
        self.locked_writes = 0

    async def get(self, user_id: str) -> Cart:
        return self.carts.get(user_id, Cart(user_id))

    async def get_for_update(self, user_id: str) -> Cart:
        self.locked_writes += 1
        return await self.get(user_id)

    async def save(self, before: Cart, after: Cart) -> Cart:
        self.writes += 1
        stored = Cart(after.user_id, after.items, datetime.now(UTC))
        self.carts[after.user_id] = stored
        return stored

    async def current(self, user_id: str) -> Cart:
        return await self.get(user_id)

    async def swap(self, before: Cart, after: Cart) -> Cart | None:
        """Stores `after` only if the cart still holds `before`'s lines. `races` other
        changes (each adds a unit of `race_product`) land first, one per swap, as a
        concurrent request would."""
        if self.races:
            self.races -= 1
            await self.save(before, (await self.get(before.user_id)).add(self.race_product, 1))
        if (await self.get(before.user_id)).items != before.items:
            self.lost += 1
            return None
        return await self.save(before, after)

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
    async def swap(self, user_id: str) -> AsyncIterator[MemoryCarts]:
        yield self.store  # each swap commits on its own

    @asynccontextmanager
    async def read(self) -> AsyncIterator[MemoryCarts]:
        yield self.store
