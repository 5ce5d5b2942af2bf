"""Cart use cases. Each takes a fresh unit of work; stdlib + domain + ports.

A shopper's change reads the cart, applies the domain operation and stores the result only
if the cart still holds what was read (compare-and-set), trying again from a fresh read if
another change came first: the limits hold under concurrent requests for one cart, with
three round trips and no lock held between them (a locked transaction took five).
Concurrent changes of one cart in one process queue there (uow.swap), so a race is lost
only to another process (a second worker, the OrderPlaced consumer); after
OPTIMISTIC_TRIES lost races the change reads the cart locked and applies in one
transaction, which always goes through. The OrderPlaced consumer always takes the lock
(its event id is recorded in the same transaction)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from services.cart.domain import Cart, CartItem, OrderPlaced
from services.cart.ports import CartUnitOfWork


async def get_cart(user_id: str, uow: CartUnitOfWork) -> Cart:
    async with uow.read() as repo:
        return await repo.get(user_id)


OPTIMISTIC_TRIES = 2


async def _change(user_id: str, uow: CartUnitOfWork, op: Callable[[Cart], Cart]) -> Cart:
    async with uow.swap(user_id) as carts:
        for _ in range(OPTIMISTIC_TRIES):
            before = await carts.current(user_id)
            after = op(before)
            if after == before:
                return before
            stored = await carts.swap(before, after)
            if stored is not None:
                return stored
    async with uow.write() as repo:
        before = await repo.get_for_update(user_id)
        after = op(before)
        if after == before:
            return before
        return await repo.save(before, after)


async def add_item(user_id: str, product_id: str, quantity: int, uow: CartUnitOfWork) -> Cart:
    return await _change(user_id, uow, lambda c: c.add(product_id, quantity))


async def set_quantity(user_id: str, product_id: str, quantity: int, uow: CartUnitOfWork) -> Cart:
    return await _change(user_id, uow, lambda c: c.set_quantity(product_id, quantity))


async def remove_item(user_id: str, product_id: str, uow: CartUnitOfWork) -> Cart:
    return await _change(user_id, uow, lambda c: c.remove(product_id))


async def empty_cart(user_id: str, uow: CartUnitOfWork) -> Cart:
    return await _change(user_id, uow, Cart.empty)


async def merge_cart(
    user_id: str, items: Sequence[CartItem], uow: CartUnitOfWork
) -> tuple[Cart, tuple[str, ...]]:
    dropped: tuple[str, ...] = ()

    def merge(cart: Cart) -> Cart:
        nonlocal dropped
        merged, dropped = cart.merge(items)
        return merged

    return await _change(user_id, uow, merge), dropped


async def order_placed(event: OrderPlaced, uow: CartUnitOfWork) -> bool:
    """Take the ordered lines out of the shopper's cart, once per event: the event's id is
    recorded in the same transaction as the change, so a redelivered event (Kafka delivers
    at least once) finds it and changes nothing. False for a redelivery."""
    async with uow.write() as repo:
        if not await repo.first_time(event.event_id):
            return False
        before = await repo.get_for_update(event.user_id)
        after = before.take_ordered(event.lines)
        if after != before:
            await repo.save(before, after)
    return True
