"""Shipping service: `python -m services.shipping.main [migrate]`."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path

from services.runtime.db import Database
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import Resource, Task, every, run, serve
from services.shipping.clients import GrpcConverter
from services.shipping.config import ShippingConfig
from services.shipping.handlers import ShippingHandlers
from services.shipping.repository import SqlQuoteUnitOfWork
from services.shipping.service import ShippingService

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


def wire(
    config: ShippingConfig, metrics: Metrics, service: str = "shipping"
) -> tuple[ShippingHandlers, list[Resource], list[Task]]:
    db = Database(config.db, metrics, service=service)
    converter = GrpcConverter(*config.currency_addr)
    core = ShippingService(
        lambda: SqlQuoteUnitOfWork(db.unit_of_work()),
        config.rules,
        converter,
        dt.timedelta(seconds=config.quote_ttl_s),
        retention=dt.timedelta(seconds=config.quote_retention_s),
    )
    tasks: list[Task] = []
    if config.prune_interval_s > 0:

        def pruned(deleted: int) -> None:
            if deleted:
                log.info("pruned expired quotes", extra={"fields": {"deleted": deleted}})

        tasks.append(
            every(
                config.prune_interval_s, core.prune, "quote pruning", logger=log, on_result=pruned
            )
        )
    return ShippingHandlers(core), [db, converter], tasks


async def main() -> int:
    config = ShippingConfig.from_env()
    metrics = Metrics("shipping")
    if sys.argv[1:] == ["migrate"] or config.migrate_on_start:
        db = Database(config.db, metrics, service="shipping")
        await db.open()
        await migrate(db.primary, MIGRATIONS)
        await db.close()
        if sys.argv[1:] == ["migrate"]:
            return 0
    handlers, resources, tasks = wire(config, metrics)
    return await serve(config.server, [handlers], resources, tasks, metrics=metrics)


if __name__ == "__main__":
    run(main)
