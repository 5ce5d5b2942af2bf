"""`python -m services.order.outbox`: a standalone relay process (scale relays apart from
the API)."""

from __future__ import annotations

import datetime as dt

from services.order.outbox.producer import LazyProducer
from services.order.outbox.relay import OutboxRelay
from services.order.repository import MongoOrders
from services.runtime.kafka import EventProducer


async def _main() -> int:
    """A standalone relay process (scale relays apart from the API)."""
    from services.order.config import OrderConfig
    from services.runtime.kafka import AvroSerde
    from services.runtime.logs import setup_logging

    cfg = OrderConfig.from_env()
    setup_logging("order-relay", cfg.server.log_level)
    repo = MongoOrders(cfg.mongo_url, cfg.mongo_database, max_pool=cfg.mongo_max_pool)
    await repo.open()
    serde = AvroSerde(cfg.kafka.registry_url, auto_register=cfg.kafka.auto_register)
    producer = LazyProducer(lambda: EventProducer(cfg.kafka, serde))
    relay = OutboxRelay(
        repo,
        producer,
        batch=cfg.relay_batch,
        lease=dt.timedelta(seconds=cfg.relay_lease_s),
        grace_s=cfg.relay_grace_s,
        delete_after_s=cfg.relay_delete_after_s,
    )
    try:
        await relay.run(cfg.relay_poll_s)
    finally:
        await producer.close()
        await repo.close()
    return 0


if __name__ == "__main__":
    from services.runtime.server import run

    run(_main)
