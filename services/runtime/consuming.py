"""The resource of a service that owns one PostgreSQL database and applies one topic's
events through the runtime's ordered pipeline (cart, recommendation): the database
(migrated on open when the service's config says so), a producer for the dead letters and
the consumer, opened and closed in that order by serve(). A service subclasses it with its
unit of work and its handlers.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Protocol

from services.runtime.db import Database, DatabaseConfig, HealthCheckFn
from services.runtime.kafka import AvroSerde, EventConsumer, EventProducer, KafkaConfig
from services.runtime.kafka.pipeline import (
    PIPELINE_FETCH,
    ConsumerMetrics,
    OrderedConsumer,
    RecordHandler,
)
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate, migrated_database


class ConsumingConfig(Protocol):
    """The settings ConsumingApp reads from a service's frozen config."""

    db: DatabaseConfig
    kafka: KafkaConfig
    group_id: str
    max_batch: int
    retry_max_s: float
    migrate_on_start: bool

    @property
    def dlq_topic(self) -> str: ...


class ConsumingApp:
    """Database + producer + OrderedConsumer of `topic`; a serve() resource."""

    def __init__(
        self,
        cfg: ConsumingConfig,
        metrics: Metrics,
        *,
        service: str,
        migrations: Path,
        topic: str,
        handler: RecordHandler[Any],
        event_metrics: ConsumerMetrics,
        batch_events: int = 1,
    ) -> None:
        self.cfg = cfg
        self.migrations = migrations
        self.db = Database(cfg.db, metrics, service=service)
        serde = AvroSerde(cfg.kafka.registry_url)
        self.producer = EventProducer(cfg.kafka, serde, metrics=metrics)
        self.consumer: OrderedConsumer[Any] = OrderedConsumer(
            EventConsumer(
                cfg.kafka,
                serde,
                [topic],
                group_id=cfg.group_id,
                max_poll_records=cfg.max_batch,
                metrics=metrics,
                **PIPELINE_FETCH.options(cfg.kafka),
            ),
            self.producer,
            handler,
            event_metrics,
            dlq_topic=cfg.dlq_topic,
            group_id=cfg.group_id,
            max_batch=cfg.max_batch,
            batch_events=batch_events,
            retry_max_s=cfg.retry_max_s,
        )

    async def open(self) -> None:
        await self.db.open()
        if self.cfg.migrate_on_start:
            await migrate(self.db.primary, self.migrations)
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

    async def consume(self) -> None:
        """The serve() task: the consumer until cancelled. Every worker process runs it
        (each opened its consumer, and a group member that never polls holds its
        partitions)."""
        await self.consumer.run()


async def migrate_only(cfg: ConsumingConfig, service: str, migrations: Path) -> int:
    """`<service> migrate`: the schema only (Kubernetes' init container); exit status 0."""
    async with migrated_database(cfg.db, service, migrations):
        return 0
