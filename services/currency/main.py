"""Currency service: `python -m services.currency.main [migrate]`."""

from __future__ import annotations

import sys
from pathlib import Path

from services.currency.config import CurrencyConfig
from services.currency.handlers import CurrencyHandlers
from services.currency.repository import SqlRateUnitOfWork
from services.currency.service import CurrencyService
from services.runtime.db import Database
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import Resource, run, serve

MIGRATIONS = Path(__file__).parent / "migrations"


def wire(
    config: CurrencyConfig, metrics: Metrics, service: str = "currency"
) -> tuple[CurrencyHandlers, list[Resource]]:
    db = Database(config.db, metrics, service=service)
    core = CurrencyService(
        lambda: SqlRateUnitOfWork(db.unit_of_work()), current_ttl_s=config.current_ttl_s
    )
    handlers = CurrencyHandlers(core)
    return handlers, [db]


async def main() -> int:
    config = CurrencyConfig.from_env()
    metrics = Metrics("currency")
    if sys.argv[1:] == ["migrate"] or config.migrate_on_start:
        db = Database(config.db, metrics, service="currency")
        await db.open()
        await migrate(db.primary, MIGRATIONS)
        await db.close()
        if sys.argv[1:] == ["migrate"]:
            return 0
    handlers, resources = wire(config, metrics)
    return await serve(config.server, [handlers], resources, metrics=metrics)


if __name__ == "__main__":
    run(main)
