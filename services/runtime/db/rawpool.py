"""A small pool of raw asyncpg connections for single-statement reads (UnitOfWork.fetch)
and, as a pool of its own on the primary, the hot write transactions (UnitOfWork.write_raw).

Why not SQLAlchemy or asyncpg.Pool: measured on the product catalog's GetProduct query
(bench/README.md, catalog_read), a read through SQLAlchemy Core's AsyncConnection costs
~380 us of client CPU, asyncpg.Pool's acquire/release ~80 us more than the query itself
(its release resets the session with a round trip by default and shields a new task), and
the query on a bare asyncpg connection ~37 us. This pool does only what a read of one
statement needs: hand out an idle connection (last in, first out, so few stay warm), open
one when below `size`, queue callers otherwise. A connection the server closed is noticed
for free (asyncpg saw the EOF); one idle longer than `ping_idle_s` is pinged first. There is
no reset: the connections run single statements in autocommit or one transaction that
ends in COMMIT or ROLLBACK, so no session state is left behind. asyncpg's statement cache
prepares each query once per connection.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class ReadPool:
    def __init__(self, connect: Connect, size: int, ping_idle_s: float, recycle_s: float) -> None:
        self._connect = connect
        self._size = max(1, size)
        self._ping_idle_s = ping_idle_s
        self._recycle_s = recycle_s
        self._idle: list[tuple[asyncpg.Connection, float]] = []  # (connection, checked in at)
        self._born: dict[asyncpg.Connection, float] = {}
        self._opening = 0
        self._waiters: collections.deque[asyncio.Future[asyncpg.Connection | None]] = (
            collections.deque()
        )
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._born) + self._opening

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def acquire(self) -> asyncpg.Connection:
        """A live connection; raises what connecting raises (OSError, asyncpg errors)."""
        while True:
            while self._idle:
                conn, since = self._idle.pop()
                if conn.is_closed():
                    self._forget(conn)
                    continue
                if time.monotonic() - since > self._ping_idle_s and not await _alive(conn):
                    self._forget(conn)
                    continue
                return conn
            if self._closed:
                raise asyncpg.InterfaceError("read pool is closed")
            if self.open_connections < self._size:
                self._opening += 1
                try:
                    conn = await self._connect()
                except BaseException:
                    self._opening -= 1
                    self._hand(None)  # a queued caller may try in our place
                    raise
                self._opening -= 1
                self._born[conn] = time.monotonic()
                return conn
            waiter: asyncio.Future[asyncpg.Connection | None] = (
                asyncio.get_running_loop().create_future()
            )
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self.release(waiter.result())  # type: ignore[arg-type]
                raise
            if handed is not None:
                return handed
            # None: a connection was dropped, so there is room to open one: loop

    def release(self, conn: asyncpg.Connection, broken: bool = False) -> None:
        """Give `conn` back. `broken`: the caller saw it fail mid-statement (or was cancelled
        during one): it is closed instead of reused."""
        born = self._born.get(conn, 0.0)
        if broken or conn.is_closed() or self._closed or time.monotonic() - born > self._recycle_s:
            self._forget(conn)
            if not conn.is_closed():
                conn.terminate()
            self._hand(None)
            return
        if not self._hand(conn):
            self._idle.append((conn, time.monotonic()))

    def _hand(self, conn: asyncpg.Connection | None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _forget(self, conn: asyncpg.Connection) -> None:
        self._born.pop(conn, None)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            self._forget(conn)
            try:
                await asyncio.wait_for(conn.close(), 2)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("read pool is closed"))


async def _alive(conn: Any) -> bool:
    """One empty query (no transaction); False, with the connection closed, if it fails."""
    try:
        await asyncio.wait_for(conn.fetchrow(";"), 2)
        return True
    except Exception:
        conn.terminate()
        return False
