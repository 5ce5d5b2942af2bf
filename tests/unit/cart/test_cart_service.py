"""Cart use cases over an in-memory unit of work (our own port, no I/O)."""

from __future__ import annotations

import asyncio

from services.cart import service
from services.cart.domain import CartItem, LineLimitError, OrderPlaced
from services.cart.repository import CartQueues
from tests.unit.cart.fakes import MemoryCarts, MemoryUnitOfWork


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


async def test_a_change_that_loses_a_race_is_recomputed_on_the_newer_cart() -> None:
    store = MemoryCarts()
    uow = MemoryUnitOfWork(store)
    store.races = 1
    cart = await service.add_item("u-1", "p-1", 2, uow)
    # The concurrent change's line is kept: the add was applied to the cart it left.
    assert cart.items == (CartItem("p-race", 1), CartItem("p-1", 2))
    assert store.lost == 1 and store.locked_writes == 0


async def test_a_change_that_keeps_losing_takes_the_lock() -> None:
    store = MemoryCarts()
    uow = MemoryUnitOfWork(store)
    store.races = service.OPTIMISTIC_TRIES
    cart = await service.add_item("u-1", "p-1", 2, uow)
    assert store.lost == service.OPTIMISTIC_TRIES and store.locked_writes == 1
    assert cart.items == (CartItem("p-race", service.OPTIMISTIC_TRIES), CartItem("p-1", 2))


async def test_a_limit_is_checked_against_the_cart_a_race_left() -> None:
    store = MemoryCarts()
    uow = MemoryUnitOfWork(store)
    await service.add_item("u-1", "p-race", 99, uow)
    store.races = 1  # takes p-race to 100 before the add below is stored
    try:
        await service.add_item("u-1", "p-race", 1, uow)
    except LineLimitError:
        pass
    else:
        raise AssertionError("101 units of one product were stored")
    assert (await service.get_cart("u-1", uow)).items == (CartItem("p-race", 100),)


async def test_one_carts_changes_queue_in_the_process_and_other_carts_do_not_wait() -> None:
    queues, order = CartQueues(), []
    a_started = asyncio.Event()

    async def change(user: str, name: str, hold: asyncio.Event | None = None) -> None:
        async with queues.hold(user):
            order.append(f"{name} in")
            if hold is not None:
                a_started.set()
                await hold.wait()
            order.append(f"{name} out")

    release = asyncio.Event()
    first = asyncio.ensure_future(change("u-1", "a", release))
    await a_started.wait()
    second = asyncio.ensure_future(change("u-1", "b"))
    await change("u-2", "other")  # another cart goes past the held one
    assert order == ["a in", "other in", "other out"] and queues.carts() == 1
    release.set()
    await asyncio.gather(first, second)
    assert order[3:] == ["a out", "b in", "b out"]
    assert queues.carts() == 0
