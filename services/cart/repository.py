"""PostgreSQL adapter of the cart ports.

A cart is one row: its lines as a small JSON array ([[product_id, quantity], ...], at most
50) in `items`. A read is one primary-key lookup (on the replica, read-your-writes through
the caller's x-shop-lsn); a shopper's change is a read on the primary plus one
compare-and-set upsert of that row, each committing on its own (the consumer's is a locked
read plus one UPDATE in a transaction): cheaper than a row per line, and a cart is never
read by anything but its shopper. `cart_events`
holds the ids of the OrderPlaced events already applied (the consumer's dedupe).

Why PostgreSQL and not Redis (as Online Boutique keeps carts): measured side by side
(bench/cart_store_ab.py, bench/README.md), Redis cost ~7x less CPU per AddItem (0.5 vs
3.5 ms, most of PostgreSQL's in the runtime's SQLAlchemy write path: pool ping, BEGIN, two
statements, COMMIT, the commit-LSN read; writes now run on raw asyncpg, UnitOfWork.write_raw)
and ~1.7x less per GetCart. At the shop's mix (an add per
~10 page views) that is a few percent of one core; PostgreSQL is already run, replicated
and backed up everywhere the manifest deploys, and applies an event's id and its cart change
in one transaction. Redis would be one more infrastructure part in every environment; the
ports allow it as one more adapter (the bench's RedisCarts is one)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from services.cart.domain import Cart, CartItem
from services.runtime.db import UnitOfWork

GET_CART = "SELECT items::text, updated_at FROM carts WHERE user_id = $1"
# Creates the row when the shopper has none and locks it either way, in one statement: two
# first requests for one cart then queue like any two others.
LOCK_CART = (
    "INSERT INTO carts (user_id) VALUES ($1) "
    "ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id "
    "RETURNING items::text, updated_at"
)
SAVE_CART = (
    "UPDATE carts SET items = $2::jsonb, updated_at = now() WHERE user_id = $1 RETURNING updated_at"
)
# The compare-and-set of a shopper's change: the new lines go in only if the row still holds
# the lines the change was computed from (jsonb equality; '[]' for a cart with no row yet,
# which also matches a row created empty meanwhile). Read committed re-checks the condition
# on the newest row version after waiting out a concurrent writer's lock, so no change is
# lost; no row returned means another change came first.
SWAP_CART = (
    "INSERT INTO carts AS c (user_id, items, updated_at) VALUES ($1, $2::jsonb, now()) "
    "ON CONFLICT (user_id) DO UPDATE SET items = EXCLUDED.items, updated_at = now() "
    "WHERE c.items = $3::jsonb RETURNING updated_at"
)
FIRST_TIME = "INSERT INTO cart_events (event_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1"
PRUNE_EVENTS = "DELETE FROM cart_events WHERE handled_at < now() - make_interval(days => $1)"


def encode_items(items: tuple[CartItem, ...]) -> str:
    return json.dumps([[i.product_id, i.quantity] for i in items], separators=(",", ":"))


def cart_of(user_id: str, items_json: str | None, updated_at: datetime | None) -> Cart:
    items = tuple(CartItem(str(p), int(q)) for p, q in json.loads(items_json or "[]"))
    return Cart(user_id, items, updated_at)


class SqlCartRepository:
    """The write side, on the unit of work's primary transaction (a raw asyncpg connection)."""

    __slots__ = ("conn",)

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def _one(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchrow(sql, *args)

    async def get(self, user_id: str) -> Cart:
        row = await self._one(GET_CART, user_id)
        return cart_of(user_id, *row) if row else Cart(user_id)

    async def get_for_update(self, user_id: str) -> Cart:
        return cart_of(user_id, *(await self._one(LOCK_CART, user_id)))

    async def save(self, before: Cart, after: Cart) -> Cart:
        row = await self._one(SAVE_CART, after.user_id, encode_items(after.items))
        return Cart(after.user_id, after.items, row[0])

    async def first_time(self, event_id: str) -> bool:
        return await self._one(FIRST_TIME, event_id) is not None


class SqlCartSwapper:
    """The lock-free change, on a raw primary connection outside any transaction."""

    __slots__ = ("conn",)

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def current(self, user_id: str) -> Cart:
        row = await self.conn.fetchrow(GET_CART, user_id)
        return cart_of(user_id, *row) if row else Cart(user_id)

    async def swap(self, before: Cart, after: Cart) -> Cart | None:
        row = await self.conn.fetchrow(
            SWAP_CART, after.user_id, encode_items(after.items), encode_items(before.items)
        )
        return None if row is None else Cart(after.user_id, after.items, row[0])


async def prune_events(uow: UnitOfWork, kept_days: int) -> int:
    """Forget applied event ids older than `kept_days` (longer than the topic keeps records,
    so no redelivery can still bring one); returns how many."""
    async with uow.write_raw() as conn:
        status = await conn.execute(PRUNE_EVENTS, kept_days)  # "DELETE <n>"
    return int(status.rsplit(" ", 1)[-1])


class SqlCartReader:
    """GetCart: one prepared statement on a raw connection (runtime db.fetch), on the
    replica once it has replayed what the caller has seen."""

    __slots__ = ("_uow",)

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def get(self, user_id: str) -> Cart:
        rows, _ = await self._uow.fetch(GET_CART, user_id)
        return cart_of(user_id, rows[0][0], rows[0][1]) if rows else Cart(user_id)


class _Reading:
    """`async with uow.read() as repo`: the read holds no connection between statements."""

    __slots__ = ("_reader",)

    def __init__(self, reader: SqlCartReader) -> None:
        self._reader = reader

    async def __aenter__(self) -> SqlCartReader:
        return self._reader

    async def __aexit__(self, *exc: object) -> None:
        return None


class CartQueues:
    """One process's queue per cart: concurrent changes of one cart run one at a time here
    instead of losing compare-and-set races to each other (a lost race costs two round
    trips). Shared by every unit of work of the process; a cart's entry lives only while
    a change of it runs or waits."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, user_id: str) -> AsyncIterator[None]:
        lock, users = self._held.get(user_id) or self._held.setdefault(
            user_id, (asyncio.Lock(), [0])
        )
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._held[user_id]

    def carts(self) -> int:
        """How many carts have a change running or waiting."""
        return len(self._held)


class SqlCartUnitOfWork:
    """The cart ports over the runtime's read/write router (one per request); `queues`
    is the process's (a unit of work made without one queues nothing)."""

    __slots__ = ("_queues", "_uow")

    def __init__(self, uow: UnitOfWork, queues: CartQueues | None = None) -> None:
        self._uow = uow
        self._queues = CartQueues() if queues is None else queues

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqlCartRepository]:
        async with self._uow.write_raw() as conn:
            yield SqlCartRepository(conn)

    @asynccontextmanager
    async def swap(self, user_id: str) -> AsyncIterator[SqlCartSwapper]:
        async with self._queues.hold(user_id), self._uow.write_raw(transaction=False) as conn:
            yield SqlCartSwapper(conn)

    def read(self) -> _Reading:
        return _Reading(SqlCartReader(self._uow))
