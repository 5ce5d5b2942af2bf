"""What the product use cases need from storage. Stdlib + domain only."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from services.product.domain import (
    Category,
    CreateProduct,
    ListProducts,
    Page,
    Product,
    Reservation,
    ReservedLine,
    SearchProducts,
    StockLine,
    UpdateProduct,
)


class ProductReader(Protocol):
    """The catalog reads (each one statement: a unit of work's read side)."""

    async def get(self, product_id: str) -> Product | None: ...

    async def list_page(self, query: ListProducts) -> Page: ...

    async def search(self, query: SearchProducts) -> Page: ...

    async def categories(self) -> list[Category]: ...


class ProductRepository(ProductReader, Protocol):
    async def add(self, cmd: CreateProduct) -> Product: ...

    async def update(self, cmd: UpdateProduct) -> Product | None: ...

    async def exists(self, product_id: str) -> bool: ...


class StockRepository(Protocol):
    """Reservations of stock for orders (the order saga's side of the catalog)."""

    async def reserve(
        self, order_id: str, lines: Sequence[StockLine]
    ) -> tuple[bool, list[ReservedLine]]:
        """Claim the order's reservation record and take stock for every line that has
        enough, recording the lines taken: (claimed, lines taken). Not claimed: the order
        already has a record (a concurrent claim of the same order is waited for) and
        nothing is taken. Fewer lines than asked: the caller must fail the unit of work,
        which undoes the claim and what was taken."""
        ...

    async def reservation(self, order_id: str) -> Reservation | None: ...

    async def exists(self, product_id: str) -> bool: ...

    async def release(self, order_id: str) -> bool:
        """Mark released and give stock back; False if there was nothing to release."""
        ...


class ProductUnitOfWork(Protocol):
    def write(self) -> AbstractAsyncContextManager[ProductRepository]: ...

    def stock(self) -> AbstractAsyncContextManager[StockRepository]:
        """A write transaction for reservations only (the hot write path)."""
        ...

    def read(self) -> AbstractAsyncContextManager[ProductReader]: ...
