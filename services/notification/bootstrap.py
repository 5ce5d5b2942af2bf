"""Wiring: real adapters for the ports, the consumer stages and the gRPC handlers, built
from one NotificationConfig. main.py serves it; tests build it with their own config
(private topics, group and short retry delays) and run it in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.notification.clients import GrpcOrderBook, GrpcUserDirectory
from services.notification.config import NotificationConfig
from services.notification.consumer import Pipeline, StageWorker
from services.notification.handlers import NotificationHandlers
from services.notification.mailer import SmtpMailer
from services.notification.replay import ReplayFilter, ReplayResult, replay_dead_letters
from services.notification.repository import PgNotificationLog
from services.notification.routing import NotificationMetrics, Topology
from services.notification.service import Notifier
from services.notification.templates import JinjaRenderer
from services.runtime.db import Database, HealthCheckFn
from services.runtime.kafka import AvroSerde, EventConsumer, EventProducer, FetchPolicy
from services.runtime.metrics import Metrics

# Stage 0 sends the emails: a record waits at most 250 ms more on the broker (order -> email
# p99 stays well under 1 s), and at 5-50 orders/s one fetch, one claim statement and one
# offset commit serve a quarter second's records instead of each record. The retry stages
# keep aiokafka's defaults: a retry record is rare (nothing to batch), it must be seen at
# once to be parked until due, and a parked partition resumes only when the fetch in
# flight returns, so a longer wait would delay every due record by it.
# NOTIFICATION_KAFKA_FETCH_* override both.
STAGE0_FETCH = FetchPolicy(max_wait_ms=250, min_bytes=64 * 1024)
RETRY_FETCH = FetchPolicy(max_wait_ms=500, min_bytes=1)


class NotificationApp:
    """Every long-lived part of the service; a serve() resource (open/close/health_checks)."""

    def __init__(self, cfg: NotificationConfig, metrics: Metrics) -> None:
        self.cfg = cfg
        self.db = Database(cfg.db, metrics, "notification")
        self.log = PgNotificationLog(
            write=lambda: self.db.primary.begin(),
            # The consumer claims on the primary; listing may lag a little: the replica.
            read=lambda: self.db.unit_of_work().read(),
            statement=self._autocommit,
            mark_linger_s=cfg.mark_linger_s,
        )
        self._autocommit_engine: AsyncEngine | None = None
        self.serde = AvroSerde(cfg.kafka.registry_url)
        self.producer = EventProducer(cfg.kafka, self.serde, metrics=metrics)
        self.mailer = SmtpMailer(
            cfg.smtp_host, cfg.smtp_port, cfg.smtp_sender, cfg.smtp_timeout_s, cfg.smtp_pool
        )
        self.users = GrpcUserDirectory(
            cfg.user_addr, cfg.rpc_timeout_s, cfg.lookup_cache_s, cfg.max_lookups
        )
        self.orders = GrpcOrderBook(
            cfg.order_addr, cfg.rpc_timeout_s, cfg.lookup_cache_s, cfg.max_lookups
        )
        self.metrics = NotificationMetrics(metrics.registry)
        self.runtime_metrics = metrics
        self.topology = Topology(cfg.topics, cfg.retry_delays_s)
        self.notifier = Notifier(
            log=self.log,
            users=self.users,
            orders=self.orders,
            mailer=self.mailer,
            renderer=JinjaRenderer(),
            stale_after=timedelta(seconds=cfg.stale_claim_s),
            message_domain=cfg.message_domain,
            max_in_flight=cfg.max_in_flight,
        )
        self.pipeline = Pipeline(self.notifier, self.producer, self.topology, self.metrics)
        self.workers = [
            StageWorker(
                stage,
                self._consumer(stage),
                self.pipeline,
                max_batch=cfg.max_batch,
            )
            for stage in range(self.topology.stages + 1)
        ]

    def _autocommit(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A primary connection for one statement (no BEGIN/COMMIT round trips)."""
        if self._autocommit_engine is None:
            self._autocommit_engine = self.db.primary.execution_options(
                isolation_level="AUTOCOMMIT"
            )
        return self._autocommit_engine.connect()

    def _consumer(self, stage: int) -> EventConsumer:
        group = self.cfg.group_id if stage == 0 else f"{self.cfg.group_id}.retry.{stage}"
        return EventConsumer(
            self.cfg.kafka,
            self.serde,
            self.topology.stage_topics(stage),
            group_id=group,
            session_timeout_ms=self.cfg.session_timeout_ms,
            heartbeat_interval_ms=max(500, self.cfg.session_timeout_ms // 4),
            max_poll_records=self.cfg.max_batch,
            metrics=self.runtime_metrics,
            **(STAGE0_FETCH if stage == 0 else RETRY_FETCH).options(self.cfg.kafka),
        )

    async def open(self) -> None:
        await self.db.open()
        await self.log.create_schema()
        await self.producer.start()
        for w in self.workers:
            await w.consumer.start()

    async def close(self) -> None:
        for w in self.workers:
            w.stop()
        for w in self.workers:
            with contextlib.suppress(Exception):
                await w.consumer.stop()
        with contextlib.suppress(Exception):
            await self.producer.stop()
        await self.mailer.close()
        self.users.close()
        self.orders.close()
        await self.db.close()

    def health_checks(self) -> dict[str, tuple[HealthCheckFn, bool]]:
        checks = self.db.health_checks()
        # SMTP down is not "unhealthy": events wait in the retry topics and nothing is lost.
        checks["smtp"] = (self._smtp_up, False)
        return checks

    async def _smtp_up(self) -> bool:
        try:
            async with asyncio.timeout(1):
                _, writer = await asyncio.open_connection(self.cfg.smtp_host, self.cfg.smtp_port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    async def consume(self) -> None:
        """The serve() task: every stage until cancelled."""
        await asyncio.gather(*(w.run() for w in self.workers))

    async def replay(self, flt: ReplayFilter) -> ReplayResult:
        return await replay_dead_letters(
            self.cfg.kafka.bootstrap_servers, self.producer, self.topology, flt
        )

    def handlers(self) -> NotificationHandlers:
        return NotificationHandlers(lambda: self.log, self.replay)
