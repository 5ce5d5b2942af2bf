"""The catalog's read SQL and row <-> domain mapping, shared by the repository (SQLAlchemy
connections) and the hot reads (raw asyncpg, services.runtime.db UnitOfWork.fetch).

Statements use asyncpg's `$n` parameters so either path runs the same text and asyncpg
prepares each once per connection. Page tokens are opaque base64 JSON holding the keyset
position and a fingerprint of the query they belong to (a token reused with other filters
is refused)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.product.domain import (
    InvalidPageTokenError,
    ListProducts,
    Money,
    Page,
    Product,
    ProductSort,
)

COLS = (
    "id, sku, name, description, category, currency, price_units, price_nanos, "
    "image_urls, stock, created_at, updated_at"
)
GET_PRODUCT = f"SELECT {COLS} FROM products WHERE id = $1"
CATEGORIES = (
    "SELECT c.slug, count(p.id) AS n FROM categories c "
    "LEFT JOIN products p ON p.category = c.slug GROUP BY c.slug ORDER BY c.slug"
)

# sort -> (ORDER BY, keyset comparison with {k}/{i} = the key and id parameters, key column)
_SORTS: dict[ProductSort, tuple[str, str, str]] = {
    ProductSort.NAME: ("name, id", "(name, id) > ({k}::text, {i}::text)", "name"),
    ProductSort.PRICE_ASC: ("price, id", "(price, id) > ({k}::text::numeric, {i}::text)", "price"),
    ProductSort.PRICE_DESC: (
        "price DESC, id DESC",
        "(price, id) < ({k}::text::numeric, {i}::text)",
        "price",
    ),
    ProductSort.NEWEST: (
        "created_at DESC, id DESC",
        "(created_at, id) < ({k}::text::timestamptz, {i}::text)",
        "created_at",
    ),
}


def product_of(row: Sequence[Any]) -> Product:
    """A products row (COLS order; an asyncpg Record or a SQLAlchemy Row) as a Product."""
    return Product(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        Money(row[5], row[6], row[7]),
        tuple(row[8]),
        row[9],
        row[10],
        row[11],
    )


def fingerprint(*parts: object) -> str:
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
    return str(value)


def list_query(q: ListProducts) -> tuple[str, list[Any], str]:
    """(SQL, parameters, fingerprint) of one ListProducts page; the SQL selects one row
    more than the page (is there a next page?) plus the sort key as the last column.
    Raises InvalidPageTokenError for a token of another query."""
    order, keyset, key_col = _SORTS[q.sort]
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if q.category:
        where.append(f"category = {arg(q.category)}")
    for money, op in ((q.min_price, ">="), (q.max_price, "<=")):
        if money is not None:
            where.append(f"price {op} {arg(money.amount)} AND currency = {arg(money.currency)}")
    fp = fingerprint("list", q.sort.value, q.category, q.min_price, q.max_price)
    if q.page_token:
        try:
            key, last_id = decode_token(q.page_token, fp)["k"]
        except (KeyError, TypeError, ValueError):
            raise InvalidPageTokenError() from None
        where.append(keyset.format(k=arg(str(key)), i=arg(str(last_id))))
    sql = f"SELECT {COLS}, {key_col} AS sort_key FROM products"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {order} LIMIT {arg(q.page_size + 1)}"
    return sql, args, fp


def page_of(rows: Sequence[Sequence[Any]], q: ListProducts, fingerprint: str) -> Page:
    """The Page of list_query's rows: page_size products and the next page's token."""
    more = len(rows) > q.page_size
    rows = rows[: q.page_size]
    token = ""
    if more:
        last = rows[-1]
        token = encode_token({"f": fingerprint, "k": [_key_text(last[-1]), last[0]]})
    return Page(tuple(product_of(r) for r in rows), token)
