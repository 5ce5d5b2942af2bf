"""`UnitOfWork`, one per request: a write is one primary transaction (its commit LSN kept
for read-your-writes), a read goes where the router (`Database`, router.py) sends it, and a
single-statement read runs without a transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime import context, tracing
from services.runtime.context import parse_lsn

if TYPE_CHECKING:
    from services.runtime.db.router import Database

FLUSH_LSN = "SELECT pg_current_wal_flush_lsn()::text"


class _OneStatementRead:
    """The connection of a single-statement replica read. If the pooled connection turns out
    to be lost, the statement (a read: safe to repeat) is re-run once on the primary in a
    READ ONLY transaction, and the replica is marked down until the next health check."""

    def __init__(self, db: Database, conn: AsyncConnection) -> None:
        self._db = db
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def execute(self, statement: Any, parameters: Any = None, **kw: Any) -> Any:
        return await self._run("execute", statement, parameters, **kw)

    async def exec_driver_sql(self, statement: str, parameters: Any = None, **kw: Any) -> Any:
        return await self._run("exec_driver_sql", statement, parameters, **kw)

    async def _run(self, method: str, statement: Any, parameters: Any, **kw: Any) -> Any:
        try:
            return await getattr(self._conn, method)(statement, parameters, **kw)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            self._db._set_replica_ok(False, f"lost connection: {type(exc.orig).__name__}")
        await self._conn.close()
        self._db._count("primary", "replica_error")
        self._conn = await self._db.primary.connect()
        await self._conn.execution_options(postgresql_readonly=True)
        async with self._conn.begin():
            return await getattr(self._conn, method)(statement, parameters, **kw)

    async def close(self) -> None:
        await self._conn.close()


class UnitOfWork:
    """One per request, never shared. `last_lsn` is the commit LSN of its newest write."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.last_lsn = 0

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """Primary transaction: commit on clean exit, rollback on any exception."""
        with tracing.db_span("db.write", "primary"):
            async with self.db.primary.connect() as conn:
                async with conn.begin():
                    yield conn
                # After the commit: the flushed WAL position is at or past our commit record
                # (it was flushed before COMMIT returned) and is what the replica can receive,
                # so a replica that replayed it sees this transaction. Asked on the driver's
                # connection, outside any transaction: one round trip, where SQLAlchemy's
                # execute would wrap it in BEGIN ... ROLLBACK (three).
                raw = await conn.get_raw_connection()
                lsn = await raw.driver_connection.fetchval(FLUSH_LSN)  # type: ignore[union-attr]
        self._saw(lsn)

    @asynccontextmanager
    async def write_raw(self, *, transaction: bool = True) -> AsyncIterator[asyncpg.Connection]:
        """Primary transaction on a raw asyncpg connection (`$n` parameters), committed on
        clean exit, rolled back on any exception: the hot write path. Through SQLAlchemy a
        write transaction costs ~2.5 ms of the service's CPU (bench/results/cart_store_ab,
        product_write_ab), most of it the async adapter; asyncpg's statement cache prepares
        each statement once per connection.

        `transaction=False`: no BEGIN/COMMIT round trips; each statement commits on its own,
        so it suits a block whose write is one statement (a compare-and-set, say). The
        commit LSN is read on clean exit all the same (not after an exception)."""
        with tracing.db_span("db.write", "primary"):
            async with self.db.raw_write_connection() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
                lsn = await conn.fetchval(FLUSH_LSN)  # see write()
        self._saw(lsn)

    def _saw(self, lsn: str) -> None:
        self.last_lsn = max(self.last_lsn, parse_lsn(lsn))
        ctx = context.current()
        if ctx is not None:
            ctx.saw_lsn(self.last_lsn)

    def need_lsn(self, after: int | str | None = None) -> int:
        """The LSN a read of this unit of work must see: the max of `after`, its own last
        commit and the caller's `x-shop-lsn` (request context)."""
        need = self.last_lsn
        if after:
            need = max(need, parse_lsn(after) if isinstance(after, str) else after)
        ctx = context.current()
        if ctx is not None and ctx.min_lsn > need:
            need = ctx.min_lsn
        return need

    def read(self, after: int | str | None = None, *, single_statement: bool = False) -> Any:
        """Read transaction on the replica once it replayed `after` (and this unit of work's
        and the caller's LSN), else on the primary. `single_statement=True`: the block runs
        exactly one statement, so on the replica it runs without a transaction."""
        return self.db.read_connection(self.need_lsn(after), single_statement)

    async def fetch(self, query: str, *args: Any, after: int = 0) -> tuple[list[Any], int]:
        """One read-only statement (asyncpg `$n` parameters), routed as read() routes, on a
        raw asyncpg connection: the hot-path read. Returns (rows, an LSN the rows include);
        rows index by position and by column name."""
        return await self.db.fetch(query, args, self.need_lsn(after))
