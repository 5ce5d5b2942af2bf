"""PostgreSQL adapter of the product ports: SQL (Core, text) and explicit row <-> domain
mapping. The catalog's read SQL and page tokens live in queries.py; GetProduct and
ListProducts run there as prepared statements on raw asyncpg connections (the hot reads,
`SqlCatalogReader`), optionally behind the read-through cache of cache.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.product.cache import CachedCatalogReader, CatalogCache
from services.product.domain import (
    Category,
    CreateProduct,
    ListProducts,
    Page,
    Product,
    SearchProducts,
    SkuTakenError,
    UpdateProduct,
)
from services.product.ports import ProductReader
from services.product.queries import (
    CATEGORIES,
    COLS,
    GET_PRODUCT,
    decode_token,
    encode_token,
    fingerprint,
    list_query,
    page_of,
    product_of,
)
from services.product.stock import PgStockRepository
from services.runtime.db import UnitOfWork


class SqlProductRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get(self, product_id: str) -> Product | None:
        rows = (await self.conn.exec_driver_sql(GET_PRODUCT, (product_id,))).all()
        return product_of(rows[0]) if rows else None

    async def list_page(self, q: ListProducts) -> Page:
        sql, args, fp = list_query(q)
        return page_of((await self.conn.exec_driver_sql(sql, tuple(args))).all(), q, fp)

    async def search(self, q: SearchProducts) -> Page:
        fp = fingerprint("search", q.query)
        offset = int(decode_token(q.page_token, fp).get("o", 0)) if q.page_token else 0
        rows = (
            await self.conn.execute(
                text(
                    f"SELECT {COLS} FROM products, websearch_to_tsquery('english', :q) query "
                    "WHERE search @@ query "
                    "ORDER BY ts_rank(search, query) DESC, id LIMIT :limit OFFSET :offset"
                ),
                {"q": q.query, "limit": q.page_size + 1, "offset": offset},
            )
        ).all()
        more = len(rows) > q.page_size
        rows = rows[: q.page_size]
        token = encode_token({"f": fp, "o": offset + len(rows)}) if more else ""
        return Page(tuple(product_of(r) for r in rows), token)

    async def _ensure_category(self, slug: str) -> None:
        await self.conn.execute(
            text("INSERT INTO categories (slug) VALUES (:s) ON CONFLICT DO NOTHING"), {"s": slug}
        )

    async def add(self, cmd: CreateProduct, product_id: str | None = None) -> Product:
        await self._ensure_category(cmd.category)
        params = {
            "sku": cmd.sku,
            "name": cmd.name,
            "description": cmd.description,
            "category": cmd.category,
            "currency": cmd.price.currency,
            "units": cmd.price.units,
            "nanos": cmd.price.nanos,
            "images": list(cmd.image_urls),
            "stock": cmd.stock,
            "id": product_id,
        }
        try:
            async with self.conn.begin_nested():  # a duplicate sku must not abort the caller
                row = (
                    await self.conn.execute(
                        text(
                            "INSERT INTO products (id, sku, name, description, category, "
                            "currency, price_units, price_nanos, image_urls, stock) VALUES ("
                            "coalesce(:id, 'p-' || lpad(nextval('product_number_seq')::text, "
                            "4, '0')), :sku, :name, :description, :category, :currency, :units, "
                            f":nanos, :images, :stock) RETURNING {COLS}"
                        ),
                        params,
                    )
                ).one()
        except IntegrityError as exc:
            if "sku" in str(exc.orig):
                raise SkuTakenError(cmd.sku) from None
            raise
        return product_of(row)

    async def update(self, cmd: UpdateProduct) -> Product | None:
        sets = ["updated_at = now()"]
        params: dict[str, Any] = {"id": cmd.id}
        for col in ("name", "description", "category", "stock"):
            value = getattr(cmd, col)
            if value is not None:
                sets.append(f"{col} = :{col}")
                params[col] = value
        if cmd.category is not None:
            await self._ensure_category(cmd.category)
        if cmd.price is not None:
            sets.append("currency = :currency, price_units = :units, price_nanos = :nanos")
            params.update(currency=cmd.price.currency, units=cmd.price.units, nanos=cmd.price.nanos)
        if cmd.image_urls is not None:
            sets.append("image_urls = :images")
            params["images"] = list(cmd.image_urls)
        row = (
            await self.conn.execute(
                text(f"UPDATE products SET {', '.join(sets)} WHERE id = :id RETURNING {COLS}"),
                params,
            )
        ).first()
        return product_of(row) if row else None

    async def exists(self, product_id: str) -> bool:
        row = await self.conn.execute(
            text("SELECT 1 FROM products WHERE id = :id"), {"id": product_id}
        )
        return row.first() is not None


class SqlCatalogReader:
    """The read side, one per request. get, list_page and categories: one prepared
    statement each on a raw asyncpg connection (UnitOfWork.fetch: replica, or primary if
    it is behind the caller's LSN); search: one SELECT through SQLAlchemy in autocommit."""

    __slots__ = ("_uow",)

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def get_at(self, product_id: str, after: int = 0) -> tuple[Product | None, int]:
        """The product (or None) and an LSN the read is known to include."""
        rows, seen = await self._uow.fetch(GET_PRODUCT, product_id, after=after)
        return (product_of(rows[0]) if rows else None), seen

    async def list_page_at(self, q: ListProducts, after: int = 0) -> tuple[Page, int]:
        sql, args, fp = list_query(q)
        rows, seen = await self._uow.fetch(sql, *args, after=after)
        return page_of(rows, q, fp), seen

    async def get(self, product_id: str) -> Product | None:
        return (await self.get_at(product_id))[0]

    async def list_page(self, q: ListProducts) -> Page:
        return (await self.list_page_at(q))[0]

    async def search(self, q: SearchProducts) -> Page:
        async with self._uow.read(single_statement=True) as conn:
            return await SqlProductRepository(conn).search(q)

    async def categories(self) -> list[Category]:
        return (await self.categories_at())[0]

    async def categories_at(self, after: int = 0) -> tuple[list[Category], int]:
        """Every category with its product count, and an LSN the read is known to include."""
        rows, seen = await self._uow.fetch(CATEGORIES, after=after)
        return [Category(r[0], r[1]) for r in rows], seen


class _Reading:
    """`async with uow.read() as repo`: the reads hold no connection between statements,
    so there is nothing to open or close here (cheaper than an asynccontextmanager)."""

    __slots__ = ("_reader",)

    def __init__(self, reader: ProductReader) -> None:
        self._reader = reader

    async def __aenter__(self) -> ProductReader:
        return self._reader

    async def __aexit__(self, *exc: object) -> None:
        return None


class SqlProductUnitOfWork:
    """The product ports over the runtime's read/write router (one per request); reads go
    through the process's catalog cache when there is one."""

    __slots__ = ("_cache", "_uow")

    def __init__(self, uow: UnitOfWork, cache: CatalogCache | None = None) -> None:
        self._uow = uow
        self._cache = cache

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqlProductRepository]:
        async with self._uow.write() as conn:
            yield SqlProductRepository(conn)

    @asynccontextmanager
    async def stock(self) -> AsyncIterator[PgStockRepository]:
        async with self._uow.write_raw() as conn:
            yield PgStockRepository(conn)

    def read(self) -> _Reading:
        reader = SqlCatalogReader(self._uow)
        if self._cache is None:
            return _Reading(reader)
        return _Reading(CachedCatalogReader(reader, self._cache, self._uow.need_lsn))
