"""Alembic migrations for a service database, run at startup (or `<service> migrate`).

Each service keeps `migrations/` (env.py calling `run_env()`, versions/*.py). `migrate`
takes a PostgreSQL advisory lock so two replicas starting together do not race, then runs
`alembic upgrade head` on one primary connection. In a worker process of a multi-process
service (workers.py) `migrate` returns at once: its supervisor ran main() up to serve(),
migrations included, before it started the workers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from services.runtime.db import Database, DatabaseConfig

log = logging.getLogger(__name__)


def _upgrade(sync_conn: Any, script_location: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", script_location)
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


async def migrate(engine: AsyncEngine, script_location: Path) -> None:
    """Upgrade the database behind `engine` (the primary) to head."""
    from services.runtime.workers import in_worker

    if in_worker():
        return
    async with engine.connect() as conn:
        key = f"shopmesh-migrate:{script_location.parent.name}"
        await conn.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": key})
        await conn.commit()
        try:
            await conn.run_sync(_upgrade, str(script_location))
            await conn.commit()
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": key})
            await conn.commit()
    log.info("migrations at head", extra={"fields": {"scripts": str(script_location)}})


def run_env() -> None:
    """Body of every service's migrations/env.py (online mode on the given connection)."""
    from alembic import context

    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


@contextlib.asynccontextmanager
async def migrated_database(
    config: DatabaseConfig, service: str, script_location: Path
) -> AsyncIterator[Database]:
    """An opened and migrated Database for one-shot commands (demo loaders, admin tasks)
    outside `serve()`; closed on exit."""
    from services.runtime.db import Database
    from services.runtime.metrics import Metrics

    db = Database(config, Metrics(service), service=service)
    await db.open()
    try:
        await migrate(db.primary, script_location)
        yield db
    finally:
        await db.close()
