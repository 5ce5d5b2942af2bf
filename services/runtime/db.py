"""PostgreSQL read/write router and unit of work (SQLAlchemy 2 async Core + asyncpg).

`Database` owns two AsyncEngines: the primary (every write, and reads that cannot be served
by the replica) and the streaming replica (reads). A `UnitOfWork` is made per request:

    uow = db.unit_of_work()
    async with uow.write() as conn:        # primary transaction: commit on clean exit,
        await conn.execute(...)            # rollback on exception; keeps the commit LSN
    async with uow.read() as conn:         # replica if it has replayed uow.last_lsn,
        await conn.execute(...)            # else the primary (counted + logged)

Read-your-writes. `read(after=lsn)` waits (bounded, `replica_wait_ms`) until the replica's
pg_last_wal_replay_lsn() >= lsn, else reads the primary. The LSN it waits for is the max of
`after`, this unit of work's own last commit, and the caller's `x-shop-lsn` request
metadata (see services.runtime.context). The server returns the newest commit LSN of a call
in the `x-shop-lsn` trailer; a client that echoes it on its next call (to this service)
reads its own writes even when that read lands on the replica.

Cheap reads. `read(single_statement=True)` (one SELECT, e.g. a product lookup) runs on the
replica in autocommit: one round trip instead of BEGIN READ ONLY + query + COMMIT. Replica
connections are not pinged at checkout (the ping is BEGIN + ";" + ROLLBACK, three round
trips): a connection the server closed is dropped for free at checkout, one idle longer than
`ping_idle_s` is pinged, and a single-statement read that still hits a lost connection is
re-run once on the primary. `REPLICA_PRE_PING=true` / `READ_SNAPSHOT=always` restore the
old behaviour (bench/hot_rpc.py measures both side by side).

Fallback. Replica down (health check or connect error) or lagging more than
`replica_max_lag_bytes` -> reads go to the primary; `db_reads_total{target,reason}` says
where every read went and why, and state changes are logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.runtime import context, tracing
from services.runtime.config import check_port, load, secret, setting
from services.runtime.context import format_lsn, parse_lsn
from services.runtime.metrics import Metrics, Sample

log = logging.getLogger(__name__)

_CONNECT_ERRORS = (OSError, asyncio.TimeoutError, DBAPIError, InterfaceError, OperationalError)


@dataclass(frozen=True)
class DatabaseConfig:
    """Env: <SERVICE>_DB_<FIELD>, e.g. PRODUCT_DB_NAME, PRODUCT_DB_PASSWORD."""

    name: str = setting("postgres", help="database name")
    host: str = setting("127.0.0.1", help="primary host")
    primary_port: int = setting(5432, help="primary port")
    replica_host: str = setting("127.0.0.1", help="streaming replica host")
    replica_port: int = setting(5433, help="replica port; 0 = no replica, all reads on primary")
    user: str = setting("shopmesh", help="role")
    password: str = secret("shopmesh", help="role password (dev default only in dev)")
    pool_size: int = setting(10, help="primary pool size")
    max_overflow: int = setting(5, help="extra primary connections under bursts")
    replica_pool_size: int = setting(10, help="replica pool size")
    replica_wait_ms: int = setting(200, help="how long a read waits for the replica to catch up")
    replica_max_lag_bytes: int = setting(16 << 20, help="beyond this lag reads use the primary")
    connect_timeout_s: float = setting(2.0, help="connect timeout")
    statement_timeout_ms: int = setting(5000, help="server-side statement timeout")
    replica_pre_ping: bool = setting(
        False, help="ping replica connections at every checkout (3 round trips)"
    )
    ping_idle_s: float = setting(10.0, help="without pre-ping: ping connections idle this long")
    pool_recycle_s: int = setting(1800, help="replace pooled connections older than this")
    read_snapshot: str = setting(
        "multi", help="multi: single-statement reads in autocommit; always: every read in a txn"
    )
    trace_statements: bool = setting(
        False, help="a span per SQL statement (db.statement); off: one span per unit of work"
    )

    @classmethod
    def from_env(cls, prefix: str, environ: Any = None, **defaults: Any) -> DatabaseConfig:
        cfg = load(cls, prefix, environ, **defaults)
        check_port(f"{prefix}_PRIMARY_PORT", cfg.primary_port)
        if cfg.replica_port:
            check_port(f"{prefix}_REPLICA_PORT", cfg.replica_port)
        return cfg

    def url(self, replica: bool = False) -> str:
        host, port = (
            (self.replica_host, self.replica_port) if replica else (self.host, self.primary_port)
        )
        return f"postgresql+asyncpg://{self.user}:{self.password}@{host}:{port}/{self.name}"


HealthCheckFn = Callable[[], Awaitable[bool]]


class Database:
    """The two engines plus the replica's observed state. Open at start, close at exit."""

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

    # ------------------------------------------------------------ lifecycle

    def _engine(self, replica: bool, pool_size: int, overflow: int) -> AsyncEngine:
        role = "replica" if replica else "primary"
        pre_ping = not replica or self.config.replica_pre_ping
        engine = create_async_engine(
            self.config.url(replica),
            pool_size=pool_size,
            max_overflow=overflow,
            # A stopped or restarted server leaves dead pooled connections; the ping
            # replaces them instead of failing a request. Writes keep it; replica reads use
            # the free checks of _cheap_checkout and retry once instead (see module doc).
            pool_pre_ping=pre_ping,
            pool_recycle=self.config.pool_recycle_s,
            # A DBAPIError's text otherwise lists the statement's bound values, and the
            # "unexpected error" log line carries it: password hashes, emails, addresses.
            hide_parameters=True,
            connect_args={
                "timeout": self.config.connect_timeout_s,
                "server_settings": {
                    # Tagged so pg_stat_activity shows which pool a session belongs to.
                    "application_name": f"{self.service}:{role}",
                    "statement_timeout": str(self.config.statement_timeout_ms),
                },
            },
        )
        if self.config.trace_statements:
            # Off by default: the db.read / db.write span of the unit of work is enough on
            # the hot path; a span per statement roughly doubled the tracing cost of a read.
            tracing.instrument_engine(engine, role, self.config.name)
        if not pre_ping:
            _cheap_checkout(engine, self.config.ping_idle_s)
        self.metrics.gauge_at_scrape(
            f"db_pool:{self.config.name}:{role}", _pool_gauges(engine, role, self.config.name)
        )
        return engine

    async def open(self) -> None:
        c = self.config
        self._primary = self._engine(False, c.pool_size, c.max_overflow)
        if c.replica_port:
            self._replica = self._engine(True, c.replica_pool_size, 2)

    async def close(self) -> None:
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
        self.metrics.db_reads.labels(target, reason).inc()

    async def _replica_conn(
        self, need: int, single_statement: bool = False
    ) -> tuple[AsyncConnection | None, str]:
        """A replica connection that has replayed `need`, or (None, why not)."""
        if self._replica is None:
            return None, "no_replica"
        if not self.replica_ok:
            return None, "replica_down"
        if self.replica_lag_bytes > self.config.replica_max_lag_bytes:
            self._set_replica_lagging(True)
            return None, "replica_lagging"
        self._set_replica_lagging(False)
        try:
            conn = await self._replica.connect()
            # No retry for a multi-statement read: make sure the connection is alive (one
            # round trip; the pool's pre-ping would cost three), replaced once if not.
            if not single_statement and not self.config.replica_pre_ping and not await _alive(conn):
                await conn.close()
                conn = await self._replica.connect()
                if not await _alive(conn):
                    await conn.close()
                    raise OSError("replica connection lost")
        except _CONNECT_ERRORS as exc:
            self._set_replica_ok(False, f"connect failed: {type(exc).__name__}")
            return None, "replica_error"
        if need <= self._replica_lsn:
            return conn, "replica"
        deadline = time.monotonic() + self.config.replica_wait_ms / 1000
        pause = 0.002
        try:
            while True:
                replayed = (
                    await conn.execute(text("SELECT pg_last_wal_replay_lsn()::text"))
                ).scalar_one()
                self._replica_lsn = max(self._replica_lsn, parse_lsn(replayed or "0/0"))
                if need <= self._replica_lsn:
                    await conn.rollback()  # end the polling transaction; the read starts fresh
                    return conn, "replica_caught_up"
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.02)
        except _CONNECT_ERRORS as exc:
            self._set_replica_ok(False, f"query failed: {type(exc).__name__}")
            await conn.close()
            return None, "replica_error"
        await conn.close()
        log.info(
            "replica behind, reading primary",
            extra={
                "fields": {"need_lsn": format_lsn(need), "replayed": format_lsn(self._replica_lsn)}
            },
        )
        return None, "replica_behind"

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


async def _alive(conn: AsyncConnection) -> bool:
    """One empty query on the raw asyncpg connection (no transaction); invalidates it if dead."""
    raw = await conn.get_raw_connection()
    try:
        await raw.driver_connection.fetchrow(";")  # type: ignore[union-attr]
        return True
    except Exception:
        await conn.invalidate()
        return False


def _cheap_checkout(engine: AsyncEngine, ping_idle_s: float) -> None:
    """Instead of a ping per checkout: drop connections the server already closed (asyncpg
    saw the EOF, no round trip) and ping only those idle longer than `ping_idle_s`."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _checkin(dbapi_conn: Any, record: Any) -> None:
        record.info["shop_checkin"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        raw = getattr(dbapi_conn, "_connection", None)  # the asyncpg connection
        if raw is not None and raw.is_closed():
            raise DisconnectionError("connection closed by the server")
        idle = time.monotonic() - record.info.get("shop_checkin", time.monotonic())
        if idle > ping_idle_s:
            try:
                dbapi_conn.ping()
            except Exception as exc:
                raise DisconnectionError(f"ping failed: {type(exc).__name__}") from exc


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
        try:
            return await self._conn.execute(statement, parameters, **kw)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            self._db._set_replica_ok(False, f"lost connection: {type(exc.orig).__name__}")
        await self._conn.close()
        self._db._count("primary", "replica_error")
        self._conn = await self._db.primary.connect()
        await self._conn.execution_options(postgresql_readonly=True)
        async with self._conn.begin():
            return await self._conn.execute(statement, parameters, **kw)

    async def close(self) -> None:
        await self._conn.close()


def _pool_gauges(engine: AsyncEngine, role: str, db: str) -> Callable[[], Iterator[Sample]]:
    def read() -> Iterator[Sample]:
        pool: Any = engine.pool
        what = "connections of the pool by state (in_use, idle, overflow)"
        for state, value in (
            ("in_use", pool.checkedout()),
            ("idle", pool.checkedin()),
            ("overflow", max(0, pool.overflow())),
        ):
            labels = {"database": db, "pool": role, "state": state}
            yield "db_pool_connections", what, labels, float(value)

    return read


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
                # so a replica that replayed it sees this transaction.
                flushed = text("SELECT pg_current_wal_flush_lsn()::text")
                lsn = (await conn.execute(flushed)).scalar_one()
                await conn.rollback()
        self.last_lsn = max(self.last_lsn, parse_lsn(lsn))
        ctx = context.current()
        if ctx is not None:
            ctx.saw_lsn(self.last_lsn)

    def read(self, after: int | str | None = None, *, single_statement: bool = False) -> Any:
        """Read transaction on the replica once it replayed `after` (and this unit of work's
        and the caller's LSN), else on the primary. `single_statement=True`: the block runs
        exactly one statement, so on the replica it runs without a transaction."""
        need = self.last_lsn
        if after:
            need = max(need, parse_lsn(after) if isinstance(after, str) else after)
        ctx = context.current()
        if ctx is not None:
            need = max(need, ctx.min_lsn)
        return self.db.read_connection(need, single_statement)
