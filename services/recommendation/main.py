"""Recommendation service: `python -m services.recommendation.main [migrate]`."""

from __future__ import annotations

import sys
from pathlib import Path

from services.recommendation.clients import GrpcCatalog
from services.recommendation.config import RecommendationConfig
from services.recommendation.consumer import EventMetrics, OrderPlacedHandler
from services.recommendation.handlers import RecommendationHandlers
from services.recommendation.repository import SqlCoPurchaseUnitOfWork
from services.runtime.consuming import ConsumingApp, migrate_only
from services.runtime.metrics import Metrics
from services.runtime.server import per_process, run, serve

MIGRATIONS = Path(__file__).parent / "migrations"


class RecommendationApp(ConsumingApp):
    """The database, the product client, the OrderPlaced consumer and the handlers, built
    from one config; a serve() resource. Tests build it with their own config."""

    def __init__(
        self, cfg: RecommendationConfig, metrics: Metrics, service: str = "recommendation"
    ) -> None:
        super().__init__(
            cfg, metrics, service=service, migrations=MIGRATIONS, topic=cfg.orders_topic,
            handler=OrderPlacedHandler(self.uow), event_metrics=EventMetrics(metrics.registry),
            batch_events=cfg.tx_events,
        )  # fmt: skip
        self.catalog = GrpcCatalog(*cfg.product_host_port)

    def uow(self) -> SqlCoPurchaseUnitOfWork:
        return SqlCoPurchaseUnitOfWork(self.db.unit_of_work())

    def handlers(self) -> RecommendationHandlers:
        return RecommendationHandlers(self.uow, self.catalog)

    async def close(self) -> None:
        await super().close()
        await self.catalog.close()


async def main() -> int:
    cfg = RecommendationConfig.from_env()
    if sys.argv[1:] == ["migrate"]:
        return await migrate_only(cfg, "recommendation", MIGRATIONS)
    metrics = Metrics("recommendation")
    app = RecommendationApp(cfg, metrics)
    tasks = [per_process(app.consume)]
    return await serve(cfg.server, [app.handlers()], [app], tasks, metrics=metrics)


if __name__ == "__main__":
    run(main)
