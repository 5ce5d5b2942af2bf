"""Order service: `python -m services.order.main` (gRPC API, outbox relay, sweeper)."""

from __future__ import annotations

import datetime as dt
import logging

from services.order.clients import GrpcCatalog, GrpcQuotes, GrpcRates, GrpcUsers
from services.order.config import OrderConfig
from services.order.handlers import OrderHandlers
from services.order.metrics import OrderMetrics
from services.order.outbox import LazyProducer, OutboxRelay
from services.order.pricing import Pricer
from services.order.repository import MongoOrders
from services.order.service import OrderService, SweepReport
from services.runtime.kafka import AvroSerde, EventProducer
from services.runtime.metrics import Metrics
from services.runtime.server import every, per_process, run, serve

log = logging.getLogger("services.order")


async def main() -> int:
    cfg = OrderConfig.from_env()
    metrics = Metrics("order")
    order_metrics = OrderMetrics(metrics.registry)
    repo = MongoOrders(cfg.mongo_url, cfg.mongo_database, max_pool=cfg.mongo_max_pool)
    catalog = GrpcCatalog(*cfg.product_addr, attempts=cfg.reserve_attempts)
    users = GrpcUsers(*cfg.user_addr)
    rates = GrpcRates(*cfg.currency_addr)
    quotes = GrpcQuotes(*cfg.shipping_addr)
    pricer = Pricer(rates, quotes, cfg.default_shipping)
    service = OrderService(
        repo,
        users,
        catalog,
        observer=order_metrics,
        pricer=pricer,
        pending_timeout=dt.timedelta(seconds=cfg.pending_timeout_s),
        tombstone_ttl=dt.timedelta(seconds=cfg.tombstone_ttl_s),
    )
    resources: list = [repo, catalog, users, rates, quotes]
    tasks = []
    if cfg.relay_enabled:
        serde = AvroSerde(cfg.kafka.registry_url, auto_register=cfg.kafka.auto_register)
        # Started by the relay, retrying: Kafka down at startup must not stop the API
        # (orders are still placed; events wait in the documents).
        producer = LazyProducer(lambda: EventProducer(cfg.kafka, serde, metrics=metrics))
        resources.append(producer)
        relay = OutboxRelay(
            repo,
            producer,
            batch=cfg.relay_batch,
            lease=dt.timedelta(seconds=cfg.relay_lease_s),
            metrics=order_metrics,
            attach=True,  # woken by every write of this process, not by polling
            grace_s=cfg.relay_grace_s,
            delete_after_s=cfg.relay_delete_after_s,
        )

        async def relay_task() -> None:
            await relay.run(cfg.relay_poll_s)

        # In every worker process: each relay is handed the writes of its own process (they
        # share the outbox through the store, and take each other's claims after the grace).
        tasks.append(per_process(relay_task))
    if cfg.sweep_interval_s > 0:

        def swept(report: SweepReport) -> None:
            if report.failed or report.released or report.deleted:
                log.info("swept", extra={"fields": vars(report)})

        tasks.append(
            every(cfg.sweep_interval_s, service.sweep, "sweep", logger=log, on_result=swept)
        )
    return await serve(cfg.server, [OrderHandlers(service)], resources, tasks, metrics=metrics)


if __name__ == "__main__":
    run(main)
