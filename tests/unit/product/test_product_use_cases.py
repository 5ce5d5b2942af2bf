"""Product use cases against an in-memory fake of the ports (no I/O)."""

from __future__ import annotations

import copy
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.product import service
from services.product.domain import (
    CreateProduct,
    InsufficientStockError,
    Money,
    NegativePriceError,
    Page,
    Product,
    ProductNotFoundError,
    Reservation,
    ReservationMismatchError,
    ReservationReleasedError,
    ReservedLine,
    ReserveStock,
    StockLine,
    UpdateProduct,
    merge_lines,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)


class FakeRepo:
    def __init__(self) -> None:
        self.products: dict[str, Product] = {}
        self.reservations: dict[str, Reservation] = {}

    async def get(self, product_id):
        return self.products.get(product_id)

    async def list_page(self, query):
        return Page(tuple(self.products.values()), "")

    async def search(self, query):
        return Page((), "")

    async def categories(self):
        return []

    async def add(self, cmd):
        pid = f"p-{len(self.products) + 1:04d}"
        p = Product(pid, cmd.sku, cmd.name, cmd.description, cmd.category, cmd.price,
                    cmd.image_urls, cmd.stock, NOW, NOW)  # fmt: skip
        self.products[pid] = p
        return p

    async def update(self, cmd):
        p = self.products.get(cmd.id)
        if p is None:
            return None
        changes = {k: v for k, v in vars(cmd).items() if v is not None and k != "id"}
        p = Product(**{**vars(p), **changes})
        self.products[cmd.id] = p
        return p

    async def reserve(self, order_id, lines):
        """As the statement does: claim, take every line that has enough, record them (a
        refused order is undone by the unit of work, as the real transaction is)."""
        if order_id in self.reservations:
            return False, []
        taken = []
        for line in lines:
            p = self.products.get(line.product_id)
            if p is None or p.stock < line.quantity:
                continue
            self.products[p.id] = Product(**{**vars(p), "stock": p.stock - line.quantity})
            taken.append(ReservedLine(p.id, p.name, line.quantity, p.price))
        self.reservations[order_id] = Reservation(order_id, tuple(taken))
        return True, taken

    async def reservation(self, order_id):
        return self.reservations.get(order_id)

    async def exists(self, product_id):
        return product_id in self.products

    async def release(self, order_id):
        r = self.reservations.get(order_id)
        if r is None or r.released:
            self.reservations.setdefault(order_id, Reservation(order_id, (), released=True))
            return False
        for ln in r.lines:
            p = self.products[ln.product_id]
            self.products[p.id] = Product(**{**vars(p), "stock": p.stock + ln.quantity})
        self.reservations[order_id] = Reservation(order_id, r.lines, released=True)
        return True


class FakeUow:
    """Transactional like the real one: a write that raises leaves no trace."""

    def __init__(self, repo: FakeRepo) -> None:
        self.repo = repo

    @asynccontextmanager
    async def write(self):
        snapshot = copy.deepcopy(self.repo.__dict__)
        try:
            yield self.repo
        except BaseException:
            self.repo.__dict__.update(snapshot)
            raise

    stock = write  # reservations: the same transactional fake

    @asynccontextmanager
    async def read(self):
        yield self.repo


def usd(amount: str) -> Money:
    return Money.from_decimal("USD", Decimal(amount))


@pytest.fixture
def uow():
    return FakeUow(FakeRepo())


async def make(uow, stock=10, price="9.99"):
    return await service.create_product(
        CreateProduct("SKU", "Mug", "", "kitchen", usd(price), (), stock), uow
    )


def test_money_keeps_nanos_sign_and_exact_decimal():
    assert usd("12.5") == Money("USD", 12, 500_000_000)
    assert Money.from_decimal("USD", Decimal("-1.25")) == Money("USD", -1, -250_000_000)
    assert usd("0.1").times(3) == usd("0.3")
    with pytest.raises(ValueError):
        Money("USD", 1, -5)


def test_merge_lines_sums_duplicates_in_product_order():
    merged = merge_lines([StockLine("p-2", 1), StockLine("p-1", 2), StockLine("p-2", 3)])
    assert merged == (StockLine("p-1", 2), StockLine("p-2", 4))


async def test_reserve_takes_stock_and_returns_catalog_price(uow):
    p = await make(uow, stock=5, price="3.25")
    r = await service.reserve_stock(ReserveStock("o-1", (StockLine(p.id, 2),)), uow)
    assert r.lines[0].unit_price == usd("3.25") and not r.replayed
    assert (await service.get_product(p.id, uow)).stock == 3


async def test_reserve_is_all_or_nothing(uow):
    a = await make(uow, stock=5)
    b = await make(uow, stock=1)
    cmd = ReserveStock("o-1", (StockLine(a.id, 2), StockLine(b.id, 2)))
    with pytest.raises(InsufficientStockError):
        await service.reserve_stock(cmd, uow)
    assert (await service.get_product(a.id, uow)).stock == 5
    assert "o-1" not in uow.repo.reservations


async def test_repeat_reserve_is_replayed_without_taking_more(uow):
    p = await make(uow, stock=10)
    cmd = ReserveStock("o-1", (StockLine(p.id, 3),))
    await service.reserve_stock(cmd, uow)
    again = await service.reserve_stock(cmd, uow)
    assert again.replayed
    assert (await service.get_product(p.id, uow)).stock == 7


async def test_same_order_with_other_lines_is_refused(uow):
    p = await make(uow)
    await service.reserve_stock(ReserveStock("o-1", (StockLine(p.id, 1),)), uow)
    with pytest.raises(ReservationMismatchError):
        await service.reserve_stock(ReserveStock("o-1", (StockLine(p.id, 2),)), uow)


async def test_release_then_late_reserve_is_refused(uow):
    p = await make(uow, stock=2)
    cmd = ReserveStock("o-1", (StockLine(p.id, 2),))
    await service.reserve_stock(cmd, uow)
    assert await service.release_stock("o-1", uow) is True
    assert await service.release_stock("o-1", uow) is False
    assert (await service.get_product(p.id, uow)).stock == 2
    with pytest.raises(ReservationReleasedError):
        await service.reserve_stock(cmd, uow)


async def test_unknown_product_is_not_found(uow):
    with pytest.raises(ProductNotFoundError):
        await service.get_product("p-x", uow)
    with pytest.raises(ProductNotFoundError):
        await service.reserve_stock(ReserveStock("o-1", (StockLine("p-x", 1),)), uow)
    with pytest.raises(ProductNotFoundError):
        await service.update_product(UpdateProduct("p-x", name="n"), uow)


async def test_negative_price_is_refused(uow):
    with pytest.raises(NegativePriceError):
        await make(uow, price="-1")
    p = await make(uow)
    with pytest.raises(NegativePriceError) as err:
        await service.update_product(UpdateProduct(p.id, price=usd("-0.5")), uow)
    assert err.value.field == "price"
