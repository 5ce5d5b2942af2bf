"""Cart use cases over an in-memory unit of work (our own port, no I/O)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from services.cart import service
from services.cart.domain import Cart, CartItem, OrderPlaced


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


async def test_a_change_that_changes_nothing_writes_nothing() -> None:
    store = MemoryCarts()
    uow = MemoryUnitOfWork(store)
    await service.add_item("u-1", "p-1", 2, uow)
    await service.remove_item("u-1", "p-9", uow)
    await service.set_quantity("u-1", "p-1", 2, uow)
    assert store.writes == 1
    assert (await service.get_cart("u-1", uow)).items == (CartItem("p-1", 2),)


async def test_merge_reports_dropped_products() -> None:
    uow = MemoryUnitOfWork(MemoryCarts())
    for i in range(50):
        await service.add_item("u-1", f"p-{i}", 1, uow)
    cart, dropped = await service.merge_cart("u-1", [CartItem("p-new", 1)], uow)
    assert dropped == ("p-new",) and len(cart.items) == 50


async def test_an_order_placed_event_applies_once() -> None:
    store = MemoryCarts()
    uow = MemoryUnitOfWork(store)
    await service.add_item("u-1", "p-1", 3, uow)
    event = OrderPlaced("e-1", "o-1", "u-1", (CartItem("p-1", 2),))
    assert await service.order_placed(event, uow) is True
    assert (await service.get_cart("u-1", uow)).items == (CartItem("p-1", 1),)
    assert await service.order_placed(event, uow) is False  # redelivered
    assert (await service.get_cart("u-1", uow)).items == (CartItem("p-1", 1),)
