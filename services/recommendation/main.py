"""Recommendation service: `python -m services.recommendation.main [migrate]`."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from services.recommendation.clients import GrpcCatalog
from services.recommendation.config import RecommendationConfig
from services.recommendation.consumer import EventMetrics, OrderPlacedConsumer
from services.recommendation.handlers import RecommendationHandlers
from services.recommendation.repository import SqlCoPurchaseUnitOfWork
from services.runtime.db import Database, HealthCheckFn
from services.runtime.kafka import AvroSerde, EventConsumer, EventProducer
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import per_process, run, serve

MIGRATIONS = Path(__file__).parent / "migrations"


class RecommendationApp:
    """The database, the product client, the OrderPlaced consumer and the handlers, built
    from one config; a serve() resource. Tests build it with their own config."""

    def __init__(
        self, cfg: RecommendationConfig, metrics: Metrics, service: str = "recommendation"
    ) -> None:
        self.cfg = cfg
        self.db = Database(cfg.db, metrics, service=service)
        self.catalog = GrpcCatalog(*cfg.product_host_port)
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
            EventMetrics(metrics.registry),
            dlq_topic=cfg.dlq_topic,
            group_id=cfg.group_id,
            max_batch=cfg.max_batch,
            tx_events=cfg.tx_events,
            retry_max_s=cfg.retry_max_s,
        )

    def uow(self) -> SqlCoPurchaseUnitOfWork:
        return SqlCoPurchaseUnitOfWork(self.db.unit_of_work())

    def handlers(self) -> RecommendationHandlers:
        return RecommendationHandlers(self.uow, self.catalog)

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
        await self.catalog.close()
        await self.db.close()

    def health_checks(self) -> dict[str, tuple[HealthCheckFn, bool]]:
        return self.db.health_checks()

    async def consume(self) -> None:
        """The serve() task: the consumer until cancelled (in every worker: a group member
        that never polls would hold its partitions)."""
        await self.consumer.run()


async def main() -> int:
    cfg = RecommendationConfig.from_env()
    metrics = Metrics("recommendation")
    if sys.argv[1:] == ["migrate"]:
        db = Database(cfg.db, metrics, service="recommendation")
        await db.open()
        await migrate(db.primary, MIGRATIONS)
        await db.close()
        return 0
    app = RecommendationApp(cfg, metrics)
    tasks = [per_process(app.consume)]
    return await serve(cfg.server, [app.handlers()], [app], tasks, metrics=metrics)


if __name__ == "__main__":
    run(main)
