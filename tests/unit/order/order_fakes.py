"""In-memory fakes of the order ports: same contracts as the real adapters (unique key,
versioned saves, all-or-nothing idempotent reservations), no I/O."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import Sequence

from services.order.domain import (
    LineItem,
    Money,
    Order,
    OrderLine,
    OrderStatus,
)
from services.order.errors import (
    CatalogUnavailableError,
    OutOfStockError,
    UnknownProductError,
)
from services.order.ports import Cursor


class FakeRepo:
    def __init__(self) -> None:
        self.docs: dict[str, Order] = {}
        self.published: list = []  # every event ever saved, in order
        self.fail_saves = 0  # next N saves raise (a DB outage)

    async def add(self, order: Order) -> bool:
        await asyncio.sleep(0)
        if any(
            o.user_id == order.user_id and o.idempotency_key == order.idempotency_key
            for o in self.docs.values()
        ):
            return False
        self.docs[order.id] = copy.deepcopy(order.snapshot())
        return True

    async def get(self, order_id: str) -> Order | None:
        await asyncio.sleep(0)
        o = self.docs.get(order_id)
        return copy.deepcopy(o) if o else None

    async def get_by_key(self, user_id: str, key: str) -> Order | None:
        await asyncio.sleep(0)
        for o in self.docs.values():
            if o.user_id == user_id and o.idempotency_key == key:
                return copy.deepcopy(o)
        return None

    async def save(self, order: Order) -> bool:
        await asyncio.sleep(0)
        if self.fail_saves:
            self.fail_saves -= 1
            raise ConnectionError("db down")
        stored = self.docs.get(order.id)
        if stored is None or stored.version != order.version:
            return False
        self.published.extend(order.events)
        order.events = []
        order.version += 1
        self.docs[order.id] = copy.deepcopy(order)
        return True

    async def retire_key(self, order: Order) -> None:
        self.docs[order.id].idempotency_key = f"failed:{order.id}"

    async def mark_released(self, order_id: str) -> None:
        if order_id in self.docs:
            self.docs[order_id].release_pending = False

    async def delete_failed(self, order_id: str) -> bool:
        o = self.docs.get(order_id)
        if o and o.status is OrderStatus.FAILED:
            del self.docs[order_id]
            return True
        return False

    async def list_by_user(self, user_id: str, limit: int, after: Cursor | None) -> list[Order]:
        rows = sorted(
            (o for o in self.docs.values() if o.user_id == user_id and o.visible),
            key=lambda o: (o.created_at, o.id),
            reverse=True,
        )
        if after:
            rows = [o for o in rows if (o.created_at, o.id) < (after.created_at, after.order_id)]
        return [copy.deepcopy(o) for o in rows[:limit]]

    async def find_stale(
        self, statuses: Sequence[OrderStatus], updated_before: dt.datetime, limit: int
    ) -> list[Order]:
        return [
            copy.deepcopy(o)
            for o in self.docs.values()
            if o.status in statuses and o.updated_at < updated_before
        ][:limit]

    async def find_release_pending(self, updated_before: dt.datetime, limit: int) -> list[Order]:
        return [
            copy.deepcopy(o)
            for o in self.docs.values()
            if o.release_pending and o.updated_at < updated_before
        ][:limit]

    def visible(self) -> list[Order]:
        return [o for o in self.docs.values() if o.visible]


class FakeUsers:
    def __init__(self, *user_ids: str) -> None:
        self.ids = set(user_ids)
        self.asked = 0

    async def user_exists(self, user_id: str) -> bool:
        await asyncio.sleep(0)
        self.asked += 1
        return user_id in self.ids


class FakeCatalog:
    """Stock and prices per product; reservations by order id like the product service."""

    def __init__(self, products: dict[str, tuple[str, Money, int]]) -> None:
        self.products = {k: [name, price, stock] for k, (name, price, stock) in products.items()}
        self.reservations: dict[str, list[OrderLine]] = {}
        self.reserve_calls = 0
        self.down = False  # every call raises CatalogUnavailableError
        self.lose_reply = False  # reserve succeeds, then the reply is lost

    def stock(self, product_id: str) -> int:
        return self.products[product_id][2]

    async def reserve_stock(self, order_id: str, items: Sequence[LineItem]) -> list[OrderLine]:
        self.reserve_calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise CatalogUnavailableError("catalog down")
        if order_id in self.reservations:
            return list(self.reservations[order_id])
        for i, item in enumerate(items):
            if item.product_id not in self.products:
                raise UnknownProductError(f"lines[{i}].product_id", item.product_id)
            if self.products[item.product_id][2] < item.quantity:
                raise OutOfStockError(item.product_id)
        lines = []
        for item in items:
            p = self.products[item.product_id]
            p[2] -= item.quantity
            lines.append(OrderLine(item.product_id, p[0], item.quantity, p[1]))
        self.reservations[order_id] = lines
        if self.lose_reply:
            raise CatalogUnavailableError("reply lost")
        return list(lines)

    async def release_stock(self, order_id: str) -> bool:
        await asyncio.sleep(0)
        if self.down:
            raise CatalogUnavailableError("catalog down")
        lines = self.reservations.pop(order_id, None)
        for line in lines or ():
            self.products[line.product_id][2] += line.quantity
        return lines is not None


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(milliseconds=1)
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)
