"""Product service: `python -m services.product.main [migrate]`."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from services.product.cache import CHANNEL, CatalogCache
from services.product.config import ProductConfig
from services.product.handlers import ProductHandlers
from services.product.repository import SqlProductUnitOfWork
from services.runtime.db import ChangeListener, Database
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import Resource, run, serve

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class Parts:
    """The wired service: what serve() (or a test's App) needs, and its parts to inspect."""

    handlers: ProductHandlers
    resources: list[Resource]
    db: Database
    cache: CatalogCache | None
    listener: ChangeListener | None


def wire(config: ProductConfig, metrics: Metrics, service: str = "product") -> Parts:
    db = Database(config.db, metrics, service=service)
    cache: CatalogCache | None = None
    listener: ChangeListener | None = None
    resources: list[Resource] = [db]
    c = config.cache
    if c.enabled:
        cache = CatalogCache(c.ttl_s, c.max_products, c.max_pages)
        cache.register(metrics)
        listener = ChangeListener(config.db, CHANNEL, cache, service, ping_s=c.listen_ping_s)
        resources.append(listener)
    handlers = ProductHandlers(lambda: SqlProductUnitOfWork(db.unit_of_work(), cache))
    return Parts(handlers, resources, db, cache, listener)


async def main() -> int:
    config = ProductConfig.from_env()
    metrics = Metrics("product")
    if sys.argv[1:] == ["migrate"] or config.migrate_on_start:
        db = Database(config.db, metrics, service="product")
        await db.open()
        await migrate(db.primary, MIGRATIONS)
        await db.close()
        if sys.argv[1:] == ["migrate"]:
            return 0
    parts = wire(config, metrics)
    return await serve(config.server, [parts.handlers], parts.resources, metrics=metrics)


if __name__ == "__main__":
    run(main)
