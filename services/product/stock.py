"""PostgreSQL adapter of the stock port (reservations): the order saga's ReserveStock and
ReleaseStock, on a raw asyncpg connection in one primary transaction (UnitOfWork.write_raw),
`$n` parameters, each statement prepared once per connection by asyncpg's cache. These are
the catalog's hot writes (one of each per placed or cancelled order): through SQLAlchemy's
async adapter a write transaction cost the service more CPU than the statements themselves
(bench/results/product_write_ab.json)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from services.product.domain import Money, Reservation, ReservedLine, StockLine

# One statement: claim the reservation record, lock the products in id order (the count
# over `locked` reads all of it before the update touches a row, so two reservations lock in
# the same order and cannot deadlock), take stock where enough is left (the condition and
# the decrement are one step: concurrent orders re-check after the first commits), and
# record the lines taken. Not claimed: nothing taken.
RESERVE = """
WITH claim AS (
  INSERT INTO reservations (order_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING order_id
), locked AS (
  SELECT p.id FROM products p
  WHERE p.id = ANY($2::text[]) AND EXISTS (SELECT 1 FROM claim)
  ORDER BY p.id FOR UPDATE
), taken AS (
  UPDATE products p SET stock = p.stock - w.quantity, updated_at = now()
  FROM unnest($2::text[], $3::int[]) AS w(product_id, quantity),
       (SELECT count(*) AS n FROM locked) l
  WHERE l.n > 0 AND p.id = w.product_id AND p.stock >= w.quantity
  RETURNING p.id, p.name, p.currency, p.price_units, p.price_nanos, w.quantity
), saved AS (
  INSERT INTO reservation_lines (order_id, product_id, name, quantity, currency,
                                 unit_units, unit_nanos)
  SELECT $1, id, name, quantity, currency, price_units, price_nanos FROM taken
)
SELECT (SELECT count(*) FROM claim) AS claimed, taken.*
FROM (VALUES (1)) AS one LEFT JOIN taken ON true ORDER BY taken.id
"""
RESERVATION_HEAD = "SELECT released_at FROM reservations WHERE order_id = $1"
RESERVATION_LINES = (
    "SELECT product_id, name, quantity, currency, unit_units, unit_nanos "
    "FROM reservation_lines WHERE order_id = $1 ORDER BY product_id"
)
EXISTS = "SELECT 1 FROM products WHERE id = $1"
MARK_RELEASED = (
    "UPDATE reservations SET released_at = now() "
    "WHERE order_id = $1 AND released_at IS NULL RETURNING order_id"
)
# A ReserveStock for this order arriving late (after the saga gave up) must not take stock
# that nobody will ever release: the released record makes it a no-op.
TOMBSTONE = (
    "INSERT INTO reservations (order_id, released_at) VALUES ($1, now()) ON CONFLICT DO NOTHING"
)
# Stock back for every line, the products locked in id order as in RESERVE (no deadlock).
GIVE_BACK = """
WITH lines AS (
  SELECT product_id, quantity FROM reservation_lines WHERE order_id = $1
), locked AS (
  SELECT p.id FROM products p WHERE p.id IN (SELECT product_id FROM lines)
  ORDER BY p.id FOR UPDATE
)
UPDATE products p SET stock = p.stock + lines.quantity, updated_at = now()
FROM lines, (SELECT count(*) AS n FROM locked) l
WHERE l.n > 0 AND p.id = lines.product_id
"""


class PgStockRepository:
    """The stock port over one raw asyncpg connection inside a write transaction."""

    __slots__ = ("conn",)

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def reserve(
        self, order_id: str, lines: Sequence[StockLine]
    ) -> tuple[bool, list[ReservedLine]]:
        rows = await self.conn.fetch(
            RESERVE,
            order_id,
            [ln.product_id for ln in lines],
            [ln.quantity for ln in lines],
        )
        taken = [
            ReservedLine(
                r["id"],
                r["name"],
                r["quantity"],
                Money(r["currency"], r["price_units"], r["price_nanos"]),
            )
            for r in rows
            if r["id"] is not None
        ]
        return bool(rows[0]["claimed"]), taken

    async def reservation(self, order_id: str) -> Reservation | None:
        head = await self.conn.fetchrow(RESERVATION_HEAD, order_id)
        if head is None:
            return None
        lines = tuple(
            ReservedLine(
                r["product_id"],
                r["name"],
                r["quantity"],
                Money(r["currency"], r["unit_units"], r["unit_nanos"]),
            )
            for r in await self.conn.fetch(RESERVATION_LINES, order_id)
        )
        return Reservation(order_id, lines, released=head["released_at"] is not None)

    async def exists(self, product_id: str) -> bool:
        return await self.conn.fetchval(EXISTS, product_id) is not None

    async def release(self, order_id: str) -> bool:
        if await self.conn.fetchval(MARK_RELEASED, order_id) is None:
            await self.conn.execute(TOMBSTONE, order_id)
            return False
        await self.conn.execute(GIVE_BACK, order_id)
        return True
