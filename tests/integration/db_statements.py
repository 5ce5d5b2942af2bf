"""Which engine ran which SQL statement of one RPC, read off the service's real engines.

`StatementLog(db)` listens on the primary and replica engines of a running service's
`Database` and records, per request trace id (the caller's `x-request-id`), every statement
with the pool it went to. Health checks and other calls run outside that trace id and are
left out, so a test sees exactly what its own call sent where.
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

    def __enter__(self) -> StatementLog:
        for role, engine in self._engines.items():

            def hook(conn: Any, cursor: Any, statement: str, *_: Any, role: str = role) -> None:
                ctx = context.current()
                if ctx is not None and ctx.trace_id:
                    self._seen[ctx.trace_id].append((role, statement))

            event.listen(engine, "before_cursor_execute", hook)
            self._hooks.append((engine, hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for engine, hook in self._hooks:
            event.remove(engine, "before_cursor_execute", hook)

    def of(self, trace_id: str, role: str) -> list[str]:
        return [s for r, s in self._seen[trace_id] if r == role]
