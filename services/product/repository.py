"""PostgreSQL adapter of the product ports: SQL (Core, text) and explicit row <-> domain
mapping. Page tokens are opaque base64 JSON holding the keyset position and a fingerprint
of the query they belong to (a token reused with other filters is refused)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.product.domain import (
    Category,
    CreateProduct,
    InvalidPageTokenError,
    ListProducts,
    Money,
    Page,
    Product,
    ProductSort,
    Reservation,
    ReservedLine,
    SearchProducts,
    SkuTakenError,
    StockLine,
    UpdateProduct,
)
from services.runtime.db import UnitOfWork

COLS = (
    "id, sku, name, description, category, currency, price_units, price_nanos, "
    "image_urls, stock, created_at, updated_at"
)

# sort -> (ORDER BY, keyset comparison, key column)
_SORTS: dict[ProductSort, tuple[str, str, str]] = {
    ProductSort.NAME: ("name, id", "(name, id) > (:k_key, :k_id)", "name"),
    ProductSort.PRICE_ASC: ("price, id", "(price, id) > (CAST(:k_key AS numeric), :k_id)", "price"),
    ProductSort.PRICE_DESC: (
        "price DESC, id DESC",
        "(price, id) < (CAST(:k_key AS numeric), :k_id)",
        "price",
    ),
    ProductSort.NEWEST: (
        "created_at DESC, id DESC",
        "(created_at, id) < (CAST(:k_key AS timestamptz), :k_id)",
        "created_at",
    ),
}


def _product(row: Any) -> Product:
    return Product(
        id=row.id,
        sku=row.sku,
        name=row.name,
        description=row.description,
        category=row.category,
        price=Money(row.currency, row.price_units, row.price_nanos),
        image_urls=tuple(row.image_urls),
        stock=row.stock,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def encode_token(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def decode_token(token: str, fingerprint: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidPageTokenError() from None
    if not isinstance(data, dict) or data.get("f") != fingerprint:
        raise InvalidPageTokenError()
    return data


def _key_text(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


class SqlProductRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get(self, product_id: str) -> Product | None:
        row = (
            await self.conn.execute(
                text(f"SELECT {COLS} FROM products WHERE id = :id"), {"id": product_id}
            )
        ).first()
        return _product(row) if row else None

    async def list_page(self, q: ListProducts) -> Page:
        order, keyset, key_col = _SORTS[q.sort]
        where: list[str] = []
        params: dict[str, Any] = {"limit": q.page_size + 1}
        if q.category:
            where.append("category = :category")
            params["category"] = q.category
        for name, money, op in (("min", q.min_price, ">="), ("max", q.max_price, "<=")):
            if money is not None:
                where.append(f"price {op} :{name}_price AND currency = :{name}_cur")
                params[f"{name}_price"] = money.amount
                params[f"{name}_cur"] = money.currency
        fp = _fingerprint("list", q.sort.value, q.category, q.min_price, q.max_price)
        if q.page_token:
            token = decode_token(q.page_token, fp)
            where.append(keyset)
            params["k_key"], params["k_id"] = token["k"]
        sql = f"SELECT {COLS}, {key_col} AS sort_key FROM products"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order} LIMIT :limit"
        rows = (await self.conn.execute(text(sql), params)).all()
        more = len(rows) > q.page_size
        rows = rows[: q.page_size]
        next_token = ""
        if more:
            last = rows[-1]
            next_token = encode_token({"f": fp, "k": [_key_text(last.sort_key), last.id]})
        return Page(tuple(_product(r) for r in rows), next_token)

    async def search(self, q: SearchProducts) -> Page:
        fp = _fingerprint("search", q.query)
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
        return Page(tuple(_product(r) for r in rows), token)

    async def categories(self) -> list[Category]:
        rows = await self.conn.execute(
            text(
                "SELECT c.slug, count(p.id) AS n FROM categories c "
                "LEFT JOIN products p ON p.category = c.slug GROUP BY c.slug ORDER BY c.slug"
            )
        )
        return [Category(r.slug, r.n) for r in rows]

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
        return _product(row)

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
        return _product(row) if row else None

    # ------------------------------------------------------------ stock reservations

    async def claim_reservation(self, order_id: str) -> bool:
        row = (
            await self.conn.execute(
                text(
                    "INSERT INTO reservations (order_id) VALUES (:o) "
                    "ON CONFLICT DO NOTHING RETURNING order_id"
                ),
                {"o": order_id},
            )
        ).first()
        return row is not None

    async def reservation(self, order_id: str) -> Reservation | None:
        head = (
            await self.conn.execute(
                text("SELECT released_at FROM reservations WHERE order_id = :o"), {"o": order_id}
            )
        ).first()
        if head is None:
            return None
        rows = await self.conn.execute(
            text(
                "SELECT product_id, name, quantity, currency, unit_units, unit_nanos "
                "FROM reservation_lines WHERE order_id = :o ORDER BY product_id"
            ),
            {"o": order_id},
        )
        lines = tuple(
            ReservedLine(
                r.product_id, r.name, r.quantity, Money(r.currency, r.unit_units, r.unit_nanos)
            )
            for r in rows
        )
        return Reservation(order_id, lines, released=head.released_at is not None)

    async def take_stock(self, line: StockLine) -> ReservedLine | None:
        # The condition makes the check and the decrement one atomic step: concurrent
        # orders serialize on the row lock and re-check stock after the first commits.
        row = (
            await self.conn.execute(
                text(
                    "UPDATE products SET stock = stock - :q, updated_at = now() "
                    "WHERE id = :id AND stock >= :q "
                    "RETURNING name, currency, price_units, price_nanos"
                ),
                {"id": line.product_id, "q": line.quantity},
            )
        ).first()
        if row is None:
            return None
        return ReservedLine(
            line.product_id,
            row.name,
            line.quantity,
            Money(row.currency, row.price_units, row.price_nanos),
        )

    async def exists(self, product_id: str) -> bool:
        row = await self.conn.execute(
            text("SELECT 1 FROM products WHERE id = :id"), {"id": product_id}
        )
        return row.first() is not None

    async def save_reserved_lines(self, order_id: str, lines: list[ReservedLine]) -> None:
        await self.conn.execute(
            text(
                "INSERT INTO reservation_lines (order_id, product_id, name, quantity, currency, "
                "unit_units, unit_nanos) VALUES (:o, :p, :n, :q, :c, :u, :nn)"
            ),
            [
                {
                    "o": order_id,
                    "p": ln.product_id,
                    "n": ln.name,
                    "q": ln.quantity,
                    "c": ln.unit_price.currency,
                    "u": ln.unit_price.units,
                    "nn": ln.unit_price.nanos,
                }
                for ln in lines
            ],
        )

    async def release(self, order_id: str) -> bool:
        row = (
            await self.conn.execute(
                text(
                    "UPDATE reservations SET released_at = now() "
                    "WHERE order_id = :o AND released_at IS NULL RETURNING order_id"
                ),
                {"o": order_id},
            )
        ).first()
        if row is None:
            # Tombstone: a ReserveStock for this order arriving late (after the saga gave
            # up) must not take stock that nobody will ever release.
            await self.conn.execute(
                text(
                    "INSERT INTO reservations (order_id, released_at) VALUES (:o, now()) "
                    "ON CONFLICT DO NOTHING"
                ),
                {"o": order_id},
            )
            return False
        lines = await self.conn.execute(
            text(
                "SELECT product_id, quantity FROM reservation_lines "
                "WHERE order_id = :o ORDER BY product_id"
            ),
            {"o": order_id},
        )
        for ln in lines.all():  # product-id order, as in reserve: no deadlock
            await self.conn.execute(
                text("UPDATE products SET stock = stock + :q, updated_at = now() WHERE id = :id"),
                {"id": ln.product_id, "q": ln.quantity},
            )
        return True


class SqlProductUnitOfWork:
    """The product ports over the runtime's read/write router (one per request)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqlProductRepository]:
        async with self._uow.write() as conn:
            yield SqlProductRepository(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqlProductRepository]:
        # Every product read (get, list_page, search, categories) is one SELECT: no
        # transaction round trips on the replica (services/runtime/db.py, "Cheap reads").
        async with self._uow.read(single_statement=True) as conn:
            yield SqlProductRepository(conn)
