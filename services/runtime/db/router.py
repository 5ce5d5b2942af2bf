"""The read/write router: `Database` (engines, raw read pools, the replica's observed state);
the per-request `UnitOfWork` it hands out is uow.py's. The package docstring
(services/runtime/db) says how reads are routed and how read-your-writes works."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.runtime import tracing
from services.runtime.context import format_lsn, parse_lsn
from services.runtime.db.config import DatabaseConfig
from services.runtime.db.engines import alive, make_engine, make_read_pool
from services.runtime.db.rawpool import ReadPool
from services.runtime.db.uow import UnitOfWork, _OneStatementRead
from services.runtime.metrics import Metrics

# One logger for the whole package: operators (and tests) filter on this name.
log = logging.getLogger("services.runtime.db")

_CONNECT_ERRORS = (OSError, asyncio.TimeoutError, DBAPIError, InterfaceError, OperationalError)
_REPLAY_LSN = "SELECT pg_last_wal_replay_lsn()::text"


HealthCheckFn = Callable[[], Awaitable[bool]]


class Database:
    """The two engines, the two raw read pools and the replica's observed state. Open at
    start, close at exit."""

    def __init__(self, config: DatabaseConfig, metrics: Metrics, service: str) -> None:
        self.config = config
        self.metrics = metrics
        self.service = service
        self.name = f"postgres/{config.name}"
        self._primary: AsyncEngine | None = None
        self._replica: AsyncEngine | None = None
        self.replica_ok = True  # optimistic until a check or connect says otherwise
        self.replica_lag_bytes = 0
        self.replica_lagging = False  # reads moved to the primary because of lag (logged)
        self._replica_lsn = 0  # newest replay LSN seen; lets reads skip the wait query
        self._raw_primary: ReadPool | None = None
        self._raw_replica: ReadPool | None = None
        self._raw_writes: ReadPool | None = None
        self._counters: dict[tuple[str, str], Any] = {}  # metric children, bound once

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        c, m, svc = self.config, self.metrics, self.service
        self._primary = make_engine(c, m, svc, False, c.pool_size, c.max_overflow)
        # Connections open on first use: a service that never calls fetch() opens none.
        self._raw_primary = make_read_pool(c, m, svc, False, c.pool_size)
        self._raw_writes = make_read_pool(c, m, svc, False, c.pool_size, writes=True)
        if c.replica_port:
            self._replica = make_engine(c, m, svc, True, c.replica_pool_size, 2)
            self._raw_replica = make_read_pool(c, m, svc, True, c.replica_pool_size)

    async def close(self) -> None:
        for pool in (self._raw_replica, self._raw_primary, self._raw_writes):
            if pool is not None:
                await pool.close()
        for engine in (self._replica, self._primary):
            if engine is not None:
                await engine.dispose()

    @property
    def primary(self) -> AsyncEngine:
        assert self._primary is not None, "Database.open() not called"
        return self._primary

    @property
    def replica(self) -> AsyncEngine | None:
        return self._replica

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self)

    # ------------------------------------------------------------ health

    def health_checks(self) -> dict[str, tuple[HealthCheckFn, bool]]:
        """name -> (check, required). The replica is not required: reads fall back."""
        checks: dict[str, tuple[HealthCheckFn, bool]] = {
            f"{self.name}:primary": (self.check_primary, True)
        }
        if self._replica is not None or self.config.replica_port:
            checks[f"{self.name}:replica"] = (self.check_replica, False)
        return checks

    async def check_primary(self) -> bool:
        try:
            async with asyncio.timeout(2), self.primary.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except _CONNECT_ERRORS:
            return False

    async def check_replica(self) -> bool:
        """Replica reachable, in recovery, and its lag measured against the primary."""
        if self._replica is None:
            return False
        try:
            async with asyncio.timeout(2), self._replica.connect() as conn:
                row = (
                    await conn.execute(
                        text("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text")
                    )
                ).one()
            ok = bool(row[0]) and row[1] is not None
            if ok:
                replayed = parse_lsn(row[1])
                self._replica_lsn = max(self._replica_lsn, replayed)
                try:
                    async with asyncio.timeout(2), self.primary.connect() as conn:
                        head = (
                            await conn.execute(text("SELECT pg_current_wal_lsn()::text"))
                        ).scalar_one()
                    self.replica_lag_bytes = max(0, parse_lsn(head) - replayed)
                    self.metrics.replica_lag_bytes.set(self.replica_lag_bytes)
                except _CONNECT_ERRORS:
                    pass  # primary down: lag unknown, the replica still serves reads
        except _CONNECT_ERRORS:
            ok = False
        self._set_replica_ok(ok, "health check")
        return ok

    def _set_replica_ok(self, ok: bool, why: str) -> None:
        if ok != self.replica_ok:
            log.warning(
                "replica %s" % ("back, reads return to it" if ok else "down, reads use primary"),
                extra={"fields": {"database": self.config.name, "why": why}},
            )
        self.replica_ok = ok

    def _set_replica_lagging(self, lagging: bool) -> None:
        """Logged on change only: a lagging replica would otherwise log once per read."""
        if lagging != self.replica_lagging:
            log.warning(
                "replica lagging, reads use primary"
                if lagging
                else "replica lag back within bound, reads return to it",
                extra={
                    "fields": {
                        "database": self.config.name,
                        "lag_bytes": self.replica_lag_bytes,
                        "max_lag_bytes": self.config.replica_max_lag_bytes,
                    }
                },
            )
        self.replica_lagging = lagging

    # ------------------------------------------------------------ routing

    def _count(self, target: str, reason: str) -> None:
        child = self._counters.get((target, reason))
        if child is None:
            child = self._counters[target, reason] = self.metrics.db_reads.labels(target, reason)
        child.inc()

    def _replica_refused(self) -> str | None:
        """Why reads must not go to the replica now (no replica, down, lagging), or None."""
        if self._replica is None:
            return "no_replica"
        if not self.replica_ok:
            return "replica_down"
        if self.replica_lag_bytes > self.config.replica_max_lag_bytes:
            self._set_replica_lagging(True)
            return "replica_lagging"
        if self.replica_lagging:
            self._set_replica_lagging(False)
        return None

    async def _wait_replayed(self, need: int, replayed: Callable[[], Awaitable[Any]]) -> bool:
        """Poll the replica (`replayed()` runs the replay-LSN query on the connection the
        read will use) until it has replayed `need`; False after `replica_wait_ms`."""
        deadline = time.monotonic() + self.config.replica_wait_ms / 1000
        pause = 0.002
        while True:
            self._replica_lsn = max(self._replica_lsn, parse_lsn(await replayed() or "0/0"))
            if need <= self._replica_lsn:
                return True
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)
        log.info(
            "replica behind, reading primary",
            extra={
                "fields": {"need_lsn": format_lsn(need), "replayed": format_lsn(self._replica_lsn)}
            },
        )
        return False

    async def _replica_conn(
        self, need: int, single_statement: bool = False
    ) -> tuple[AsyncConnection | None, str]:
        """A replica connection that has replayed `need`, or (None, why not)."""
        refused = self._replica_refused()
        if refused is not None:
            return None, refused
        assert self._replica is not None
        try:
            conn = await self._replica.connect()
            # No retry for a multi-statement read: make sure the connection is alive (one
            # round trip; the pool's pre-ping would cost three), replaced once if not.
            if not single_statement and not self.config.replica_pre_ping and not await alive(conn):
                await conn.close()
                conn = await self._replica.connect()
                if not await alive(conn):
                    await conn.close()
                    raise OSError("replica connection lost")
        except _CONNECT_ERRORS as exc:
            self._set_replica_ok(False, f"connect failed: {type(exc).__name__}")
            return None, "replica_error"
        if need <= self._replica_lsn:
            return conn, "replica"

        async def replayed() -> Any:
            return (await conn.execute(text(_REPLAY_LSN))).scalar_one()

        try:
            if await self._wait_replayed(need, replayed):
                await conn.rollback()  # end the polling transaction; the read starts fresh
                return conn, "replica_caught_up"
        except _CONNECT_ERRORS as exc:
            self._set_replica_ok(False, f"query failed: {type(exc).__name__}")
            await conn.close()
            return None, "replica_error"
        await conn.close()
        return None, "replica_behind"

    @asynccontextmanager
    async def raw_write_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A raw asyncpg connection on the primary for one write transaction (the caller
        opens it). A connection the server closed is not handed out (rawpool.py); one lost
        while in use is dropped, not returned to the pool."""
        assert self._raw_writes is not None, "Database.open() not called"
        conn = await self._raw_writes.acquire()
        broken = True
        try:
            yield conn
            broken = conn.is_closed()
        except asyncpg.PostgresError:
            broken = conn.is_closed()  # the statement's own error: the session is fine
            raise
        except (asyncpg.InterfaceError, TimeoutError):
            raise  # lost, or a statement timed out mid-flight: its state is unknown
        except Exception:
            # The caller's own error between statements (a domain rule refused the change):
            # the transaction block rolled back, so the session is clean and goes back.
            broken = conn.is_closed() or conn.is_in_transaction()
            raise
        finally:
            self._raw_writes.release(conn, broken)

    @asynccontextmanager
    async def read_connection(
        self, need: int, single_statement: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        conn, reason = await self._replica_conn(need, single_statement)
        target = "primary" if conn is None else "replica"
        self._count(target, reason)
        with tracing.db_span("db.read", target, **{"db.route_reason": reason}):
            if conn is not None and single_statement and self.config.read_snapshot != "always":
                # One statement is its own snapshot: no BEGIN/COMMIT round trips, and the
                # replica refuses writes by itself (the primary fallback stays READ ONLY).
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                one = _OneStatementRead(self, conn)
                try:
                    yield one  # type: ignore[misc]
                finally:
                    await one.close()
                return
            if conn is None:
                conn = await self.primary.connect()
            try:
                # READ ONLY also on the primary fallback: a read unit of work never writes.
                await conn.execution_options(postgresql_readonly=True)
                async with conn.begin():
                    yield conn
            finally:
                await conn.close()

    async def fetch(self, query: str, args: Sequence[Any], need: int) -> tuple[list[Any], int]:
        """Run one read-only statement (asyncpg `$n` parameters) on the replica once it has
        replayed `need`, else on the primary; returns the rows and an LSN they are known to
        include (every commit at or before it is visible to the statement).

        The LSN is never the caller's `need` itself (a client may send any number): it is
        the replica's replay position observed before the statement, which the primary
        also has. Raw asyncpg connections, statements prepared once per connection, no
        transaction and no reset round trips (see rawpool.py for the measured why).
        A replica connection lost mid-statement re-runs the statement on the primary."""
        if not self.config.raw_reads:
            return await self._fetch_sqlalchemy(query, args, need)
        reason = self._replica_refused()
        if reason is None:
            assert self._raw_replica is not None
            try:
                conn = await self._raw_replica.acquire()
            except Exception as exc:  # refused, reset, timed out, "starting up"...
                self._set_replica_ok(False, f"connect failed: {type(exc).__name__}")
                reason = "replica_error"
            else:
                broken = True
                try:
                    reason = "replica"
                    if need > self._replica_lsn:
                        caught_up = await self._wait_replayed(
                            need, lambda: conn.fetchval(_REPLAY_LSN)
                        )
                        reason = "replica_caught_up" if caught_up else "replica_behind"
                    if reason != "replica_behind":
                        seen = self._replica_lsn
                        with tracing.db_span("db.read", "replica", **{"db.route_reason": reason}):
                            rows = await conn.fetch(query, *args)
                        self._count("replica", reason)
                        broken = False
                        return rows, seen
                    broken = False
                except Exception as exc:
                    # An SQL error on a live connection is the statement's own: raise it.
                    # Anything else (the server went away mid-statement) is a lost replica.
                    if isinstance(exc, asyncpg.PostgresError) and not conn.is_closed():
                        broken = False
                        raise
                    self._set_replica_ok(False, f"lost connection: {type(exc).__name__}")
                    reason = "replica_error"
                finally:
                    self._raw_replica.release(conn, broken)
        assert self._raw_primary is not None
        seen = self._replica_lsn  # replayed by the replica, so committed on the primary
        conn = await self._raw_primary.acquire()
        broken = True
        try:
            with tracing.db_span("db.read", "primary", **{"db.route_reason": reason}):
                rows = await conn.fetch(query, *args)
            broken = False
        except asyncpg.PostgresError:
            broken = conn.is_closed()
            raise
        finally:
            self._raw_primary.release(conn, broken)
        self._count("primary", reason)
        return rows, seen

    async def _fetch_sqlalchemy(
        self, query: str, args: Sequence[Any], need: int
    ) -> tuple[list[Any], int]:
        """fetch() through SQLAlchemy Core (raw_reads=false): the A/B of the raw path."""
        seen = self._replica_lsn
        async with self.read_connection(need, single_statement=True) as conn:
            rows = (await conn.exec_driver_sql(query, tuple(args))).all()
        return rows, seen
