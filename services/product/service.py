"""Product use cases. Each takes a command and a fresh unit of work; stdlib + domain + ports."""

from __future__ import annotations

from services.product.domain import (
    Category,
    CreateProduct,
    InsufficientStockError,
    ListProducts,
    NegativePriceError,
    Page,
    Product,
    ProductNotFoundError,
    Reservation,
    ReservationMismatchError,
    ReservationReleasedError,
    ReserveStock,
    SearchProducts,
    UpdateProduct,
    merge_lines,
)
from services.product.ports import ProductUnitOfWork


async def get_product(product_id: str, uow: ProductUnitOfWork) -> Product:
    async with uow.read() as repo:
        product = await repo.get(product_id)
    if product is None:
        raise ProductNotFoundError(product_id)
    return product


async def list_products(query: ListProducts, uow: ProductUnitOfWork) -> Page:
    async with uow.read() as repo:
        return await repo.list_page(query)


async def search_products(query: SearchProducts, uow: ProductUnitOfWork) -> Page:
    async with uow.read() as repo:
        return await repo.search(query)


async def list_categories(uow: ProductUnitOfWork) -> list[Category]:
    async with uow.read() as repo:
        return await repo.categories()


async def create_product(cmd: CreateProduct, uow: ProductUnitOfWork) -> Product:
    if cmd.price.units < 0 or cmd.price.nanos < 0:
        raise NegativePriceError()
    async with uow.write() as repo:
        return await repo.add(cmd)


async def update_product(cmd: UpdateProduct, uow: ProductUnitOfWork) -> Product:
    if cmd.price is not None and (cmd.price.units < 0 or cmd.price.nanos < 0):
        raise NegativePriceError()
    async with uow.write() as repo:
        product = await repo.update(cmd)
    if product is None:
        raise ProductNotFoundError(cmd.id)
    return product


async def reserve_stock(cmd: ReserveStock, uow: ProductUnitOfWork) -> Reservation:
    """All lines or none, in one transaction; idempotent by order id.

    One statement claims the reservation record and takes the stock (repository.reserve): a
    repeat of the same order (even concurrent) finds the record and returns the stored
    lines without touching stock. Any line short of stock (or unknown) raises, rolling back
    the claim and every line taken."""
    lines = merge_lines(list(cmd.lines))
    async with uow.stock() as repo:
        claimed, reserved = await repo.reserve(cmd.order_id, lines)
        if not claimed:
            stored = await repo.reservation(cmd.order_id)
            assert stored is not None
            if stored.released:
                raise ReservationReleasedError(cmd.order_id)
            if tuple((ln.product_id, ln.quantity) for ln in stored.lines) != tuple(
                (ln.product_id, ln.quantity) for ln in lines
            ):
                raise ReservationMismatchError(cmd.order_id)
            return Reservation(cmd.order_id, stored.lines, replayed=True)
        if len(reserved) < len(lines):
            got = {ln.product_id for ln in reserved}
            short = next(ln for ln in lines if ln.product_id not in got)
            if not await repo.exists(short.product_id):
                raise ProductNotFoundError(short.product_id)
            raise InsufficientStockError(short.product_id, short.quantity)
    return Reservation(cmd.order_id, tuple(reserved))


async def release_stock(order_id: str, uow: ProductUnitOfWork) -> bool:
    async with uow.stock() as repo:
        return await repo.release(order_id)
