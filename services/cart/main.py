"""Cart service: `python -m services.cart.main [migrate]`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path

from services.cart.config import CartConfig
from services.cart.consumer import CartEventMetrics, OrderPlacedConsumer
from services.cart.handlers import CartHandlers
from services.cart.repository import SqlCartUnitOfWork, prune_events
from services.runtime.db import Database, HealthCheckFn
from services.runtime.kafka import AvroSerde, EventConsumer, EventProducer
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import per_process, run, serve

MIGRATIONS = Path(__file__).parent / "migrations"
PRUNE_EVERY_S = 3600

log = logging.getLogger(__name__)


class CartApp:
    """The database, the OrderPlaced consumer and the handlers, built from one CartConfig;
    a serve() resource. Tests build it with their own config (private topic and group)."""

    def __init__(self, cfg: CartConfig, metrics: Metrics) -> None:
        self.cfg = cfg
        self.db = Database(cfg.db, metrics, service="cart")
        serde = AvroSerde(cfg.kafka.registry_url)
        self.producer = EventProducer(cfg.kafka, serde, metrics=metrics)
        self.consumer = OrderPlacedConsumer(
            EventConsumer(
                cfg.kafka,
                serde,
                [cfg.orders_topic],
                group_id=cfg.group_id,
                max_poll_records=cfg.max_batch,
                metrics=metrics,
            ),
            self.producer,
            self.uow,
            CartEventMetrics(metrics.registry),
            dlq_topic=cfg.dlq_topic,
            group_id=cfg.group_id,
            max_batch=cfg.max_batch,
            retry_max_s=cfg.retry_max_s,
        )

    def uow(self) -> SqlCartUnitOfWork:
        return SqlCartUnitOfWork(self.db.unit_of_work())

    def handlers(self) -> CartHandlers:
        return CartHandlers(self.uow)

    async def open(self) -> None:
        await self.db.open()
        if self.cfg.migrate_on_start:
            await migrate(self.db.primary, MIGRATIONS)
        await self.producer.start()
        await self.consumer.consumer.start()

    async def close(self) -> None:
        self.consumer.stop()
        with contextlib.suppress(Exception):
            await self.consumer.consumer.stop()
        with contextlib.suppress(Exception):
            await self.producer.stop()
        await self.db.close()

    def health_checks(self) -> dict[str, tuple[HealthCheckFn, bool]]:
        return self.db.health_checks()

    async def prune(self) -> None:
        """The serve() task (one process): forget old applied event ids, hourly."""
        while True:
            try:
                pruned = await prune_events(self.db.unit_of_work(), self.cfg.events_kept_days)
                if pruned:
                    log.info("pruned applied event ids", extra={"fields": {"count": pruned}})
            except Exception:
                log.exception("pruning applied event ids failed; next try in an hour")
            await asyncio.sleep(PRUNE_EVERY_S)

    async def consume(self) -> None:
        """The serve() task: the consumer until cancelled. Every worker runs it (each opened
        its consumer, and a group member that never polls holds its partitions)."""
        await self.consumer.run()


async def main() -> int:
    cfg = CartConfig.from_env()
    metrics = Metrics("cart")
    if sys.argv[1:] == ["migrate"]:  # the schema only (Kubernetes' init container)
        db = Database(cfg.db, metrics, service="cart")
        await db.open()
        await migrate(db.primary, MIGRATIONS)
        await db.close()
        return 0
    app = CartApp(cfg, metrics)
    tasks = [per_process(app.consume), app.prune]
    return await serve(cfg.server, [app.handlers()], [app], tasks, metrics=metrics)


if __name__ == "__main__":
    run(main)
