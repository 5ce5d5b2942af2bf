"""Product service: `python -m services.product.main [migrate]`."""

from __future__ import annotations

import sys
from pathlib import Path

from services.product.config import ProductConfig
from services.product.handlers import ProductHandlers
from services.product.repository import SqlProductUnitOfWork
from services.runtime.db import Database
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import run, serve

MIGRATIONS = Path(__file__).parent / "migrations"


async def main() -> int:
    config = ProductConfig.from_env()
    metrics = Metrics("product")
    db = Database(config.db, metrics, service="product")
    if sys.argv[1:] == ["migrate"] or config.migrate_on_start:
        await db.open()
        await migrate(db.primary, MIGRATIONS)
        await db.close()
        if sys.argv[1:] == ["migrate"]:
            return 0
    handlers = ProductHandlers(lambda: SqlProductUnitOfWork(db.unit_of_work()))
    return await serve(config.server, [handlers], [db], metrics=metrics)


if __name__ == "__main__":
    run(main)
