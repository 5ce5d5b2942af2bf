"""Building the connections of a Database: SQLAlchemy engines (with the cheap checkout of
replica connections) and raw asyncpg read pools, each with its pool gauges."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.runtime import tracing
from services.runtime.db.config import DatabaseConfig
from services.runtime.db.rawpool import ReadPool
from services.runtime.metrics import Metrics, Sample


def make_engine(
    config: DatabaseConfig,
    metrics: Metrics,
    service: str,
    replica: bool,
    pool_size: int,
    overflow: int,
) -> AsyncEngine:
    """A SQLAlchemy AsyncEngine on the primary or the replica, its pool gauges registered."""
    role = "replica" if replica else "primary"
    pre_ping = not replica or config.replica_pre_ping
    engine = create_async_engine(
        config.url(replica),
        pool_size=pool_size,
        max_overflow=overflow,
        # A stopped or restarted server leaves dead pooled connections; the ping
        # replaces them instead of failing a request. Writes keep it; replica reads use
        # the free checks of _cheap_checkout and retry once instead (package doc).
        pool_pre_ping=pre_ping,
        pool_recycle=config.pool_recycle_s,
        # A DBAPIError's text otherwise lists the statement's bound values, and the
        # "unexpected error" log line carries it: password hashes, emails, addresses.
        hide_parameters=True,
        connect_args={
            "timeout": config.connect_timeout_s,
            "server_settings": {
                # Tagged so pg_stat_activity shows which pool a session belongs to.
                "application_name": f"{service}:{role}",
                "statement_timeout": str(config.statement_timeout_ms),
            },
        },
    )
    if config.trace_statements:
        # Off by default: the db.read / db.write span of the unit of work is enough on
        # the hot path; a span per statement roughly doubled the tracing cost of a read.
        tracing.instrument_engine(engine, role, config.name)
    if not pre_ping:
        _cheap_checkout(engine, config.ping_idle_s)
    metrics.gauge_at_scrape(
        f"db_pool:{config.name}:{role}", _pool_gauges(engine, role, config.name)
    )
    return engine


def make_read_pool(
    config: DatabaseConfig,
    metrics: Metrics,
    service: str,
    replica: bool,
    size: int,
    writes: bool = False,
) -> ReadPool:
    """A raw asyncpg pool (rawpool.py) on the primary or the replica: read-only sessions,
    or with `writes` the primary's raw write connections (UnitOfWork.write_raw)."""
    role = "replica" if replica else ("primary_writes" if writes else "primary")
    kwargs = config.connect_kwargs(replica, f"{service}:{role}")
    if not replica and not writes:
        # Fallback reads on the primary: a read never writes (as the READ ONLY
        # transaction of read()), without the round trips of BEGIN/COMMIT.
        kwargs["server_settings"]["default_transaction_read_only"] = "on"

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(**kwargs)

    pool = ReadPool(connect, size, config.ping_idle_s, config.pool_recycle_s)
    metrics.gauge_at_scrape(
        f"db_raw_pool:{config.name}:{role}", _raw_pool_gauges(pool, role, config.name)
    )
    return pool


async def alive(conn: AsyncConnection) -> bool:
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


def _raw_pool_gauges(pool: ReadPool, role: str, db: str) -> Callable[[], Iterator[Sample]]:
    def read() -> Iterator[Sample]:
        what = "raw read connections (UnitOfWork.fetch) by state (in_use, idle)"
        idle = pool.idle_connections
        for state, value in (("in_use", pool.open_connections - idle), ("idle", idle)):
            yield (
                "db_raw_pool_connections",
                what,
                {"database": db, "pool": role, "state": state},
                value,
            )

    return read


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
