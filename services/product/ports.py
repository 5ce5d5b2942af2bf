"""What the product use cases need from storage. Stdlib + domain only."""

from __future__ import annotations

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

    async def claim_reservation(self, order_id: str) -> bool:
        """Create the reservation record; False if the order already has one (it then
        waits for a concurrent claim of the same order to finish)."""
        ...

    async def reservation(self, order_id: str) -> Reservation | None: ...

    async def take_stock(self, line: StockLine) -> ReservedLine | None:
        """Decrement stock if enough is available; None when not (or no such product)."""
        ...

    async def exists(self, product_id: str) -> bool: ...

    async def save_reserved_lines(self, order_id: str, lines: list[ReservedLine]) -> None: ...

    async def release(self, order_id: str) -> bool:
        """Mark released and give stock back; False if there was nothing to release."""
        ...


class ProductUnitOfWork(Protocol):
    def write(self) -> AbstractAsyncContextManager[ProductRepository]: ...

    def read(self) -> AbstractAsyncContextManager[ProductReader]: ...
