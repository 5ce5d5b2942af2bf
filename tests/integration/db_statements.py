"""Which engine ran which SQL statement of one RPC, read off the service's real engines.

`StatementLog(db)` listens on the primary and replica engines of a running service's
`Database`, and on the raw asyncpg connections of its pools (the hot reads and writes, via
asyncpg's query loggers, called in the request's context). It records, per request trace id
(the caller's `x-request-id`), every statement with the pool it went to. Health checks and
other calls run outside that trace id and are left out, so a test sees exactly what its own
call sent where.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from sqlalchemy import event

from services.runtime import context
from services.runtime.db import Database

WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|MERGE)\b|\bFOR\s+(NO\s+KEY\s+)?UPDATE\b", re.I)


class StatementLog:
    def __init__(self, db: Database) -> None:
        assert db.replica is not None, "the service must have a replica to prove anything"
        self._engines = {"primary": db.primary.sync_engine, "replica": db.replica.sync_engine}
        self._seen: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self._hooks: list[tuple[Any, Any]] = []
        self._db = db
        self._pools: list[tuple[Any, Any]] = []  # (pool, its own acquire)
        self._loggers: list[tuple[Any, Any]] = []  # (asyncpg connection, logger)

    def __enter__(self) -> StatementLog:
        raw = {"primary": (self._db._raw_primary, self._db._raw_writes),
               "replica": (self._db._raw_replica,)}  # fmt: skip
        for role, pools in raw.items():
            for pool in pools:
                if pool is not None:
                    self._watch_pool(pool, role)
        for role, engine in self._engines.items():

            def hook(conn: Any, cursor: Any, statement: str, *_: Any, role: str = role) -> None:
                ctx = context.current()
                if ctx is not None and ctx.trace_id:
                    self._seen[ctx.trace_id].append((role, statement))

            event.listen(engine, "before_cursor_execute", hook)
            self._hooks.append((engine, hook))
        return self

    def _watch_pool(self, pool: Any, role: str) -> None:
        acquire = pool.acquire
        watched: set[int] = set()

        def logged(record: Any) -> None:
            ctx = context.current()
            if ctx is not None and ctx.trace_id:
                self._seen[ctx.trace_id].append((role, record.query))

        async def acquire_watched() -> Any:
            conn = await acquire()
            if id(conn) not in watched:
                watched.add(id(conn))
                conn.add_query_logger(logged)
                self._loggers.append((conn, logged))
            return conn

        pool.acquire = acquire_watched
        self._pools.append((pool, acquire))

    def __exit__(self, *exc: object) -> None:
        for engine, hook in self._hooks:
            event.remove(engine, "before_cursor_execute", hook)
        for pool, acquire in self._pools:
            pool.acquire = acquire
        for conn, logger in self._loggers:
            if not conn.is_closed():
                conn.remove_query_logger(logger)

    def of(self, trace_id: str, role: str) -> list[str]:
        return [s for r, s in self._seen[trace_id] if r == role]
