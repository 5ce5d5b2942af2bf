"""Cart service: `python -m services.cart.main [migrate]`."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from services.cart.config import CartConfig
from services.cart.consumer import CartEventMetrics, OrderPlacedHandler
from services.cart.handlers import CartHandlers
from services.cart.repository import CartQueues, SqlCartUnitOfWork, prune_events
from services.runtime.consuming import ConsumingApp, migrate_only
from services.runtime.metrics import Metrics
from services.runtime.server import per_process, run, serve

MIGRATIONS = Path(__file__).parent / "migrations"
PRUNE_EVERY_S = 3600

log = logging.getLogger(__name__)


class CartApp(ConsumingApp):
    """The database, the OrderPlaced consumer and the handlers, built from one CartConfig;
    a serve() resource. Tests build it with their own config (private topic and group)."""

    def __init__(self, cfg: CartConfig, metrics: Metrics) -> None:
        super().__init__(
            cfg, metrics, service="cart", migrations=MIGRATIONS, topic=cfg.orders_topic,
            handler=OrderPlacedHandler(self.uow), event_metrics=CartEventMetrics(metrics.registry),
        )  # fmt: skip
        self.cfg: CartConfig = cfg
        self.queues = CartQueues()

    def uow(self) -> SqlCartUnitOfWork:
        return SqlCartUnitOfWork(self.db.unit_of_work(), self.queues)

    def handlers(self) -> CartHandlers:
        return CartHandlers(self.uow)

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


async def main() -> int:
    cfg = CartConfig.from_env()
    if sys.argv[1:] == ["migrate"]:
        return await migrate_only(cfg, "cart", MIGRATIONS)
    metrics = Metrics("cart")
    app = CartApp(cfg, metrics)
    tasks = [per_process(app.consume), app.prune]
    return await serve(cfg.server, [app.handlers()], [app], tasks, metrics=metrics)


if __name__ == "__main__":
    run(main)
