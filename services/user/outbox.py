"""Outbox relay: publishes pending `outbox` rows to Kafka (shop.users.v1) and marks them
sent after the broker's ack. Claims a batch with FOR UPDATE SKIP LOCKED, so several user
service instances relay in parallel without sending a row twice in the normal case. A crash
between ack and commit re-sends a row: delivery is at least once, consumers dedupe by
event id (it travels in the `event_id` header and in the record). With metrics, the relay
keeps the backlog gauges current even while Kafka is down (services/user/metrics.py)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text

from services.runtime.db import Database
from services.runtime.kafka import AvroSerde, EventProducer, KafkaConfig, TraceContext
from services.runtime.metrics import Metrics
from services.user.metrics import UserOutboxMetrics
from shop.events.v1 import UserRegistered

log = logging.getLogger(__name__)


def to_record(record_name: str, payload: dict[str, Any]) -> Any:
    """Map a stored event to its Avro-generated record."""
    if record_name == "shop.events.v1.UserRegistered":
        return UserRegistered(
            event_id=uuid.UUID(payload["event_id"]),
            occurred_at=datetime.fromisoformat(payload["occurred_at"]),
            user_id=payload["user_id"],
            email=payload["email"],
            display_name=payload["display_name"],
        )
    raise ValueError(f"unknown outbox record {record_name!r}")


async def relay_once(
    db: Database,
    producer: EventProducer,
    batch: int = 100,
    outbox_metrics: UserOutboxMetrics | None = None,
) -> int:
    """Publish one batch; returns how many rows were sent."""
    async with db.unit_of_work().write() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT event_id, topic, key, record_name, payload, traceparent FROM outbox "
                    "WHERE sent_at IS NULL ORDER BY created_at "
                    "LIMIT :n FOR UPDATE SKIP LOCKED"
                ),
                {"n": batch},
            )
        ).all()
        if not rows:
            return 0
        acks = [
            await producer.send(
                r.topic,
                to_record(r.record_name, r.payload),
                key=r.key,
                event_id=str(r.event_id),
                trace=TraceContext(r.traceparent) if r.traceparent else None,
            )
            for r in rows
        ]
        try:
            await asyncio.gather(*acks)  # acks=all for every record before marking any sent
        except Exception:
            if outbox_metrics:
                outbox_metrics.publish_failures.inc(len(rows))
            raise
        await conn.execute(
            text("UPDATE outbox SET sent_at = now() WHERE event_id = ANY(:ids)"),
            {"ids": [r.event_id for r in rows]},
        )
    if outbox_metrics:
        outbox_metrics.events_published.inc(len(rows))
    return len(rows)


async def backlog(db: Database) -> tuple[int, float]:
    """(unsent rows, age in seconds of the oldest) on the primary, where the relay marks
    rows sent (a lagging replica would show sent rows as pending). outbox_pending_idx keeps
    both figures an index scan."""
    async with db.unit_of_work().write() as conn:
        count, age = (
            await conn.execute(
                text(
                    "SELECT count(*), "
                    "coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 "
                    "FROM outbox WHERE sent_at IS NULL"
                )
            )
        ).one()
    return int(count), max(0.0, float(age))


async def _refresh_gauges(db: Database, outbox_metrics: UserOutboxMetrics) -> None:
    try:
        count, age = await backlog(db)
    except Exception:  # the database being down is the health check's news, not the relay's
        log.warning("outbox backlog query failed", exc_info=True)
        return
    outbox_metrics.backlog.set(count)
    outbox_metrics.oldest_age.set(age)


async def run_relay(
    db: Database,
    kafka: KafkaConfig,
    idle_s: float = 0.5,
    *,
    metrics: Metrics | None = None,
    outbox_metrics: UserOutboxMetrics | None = None,
    gauge_every_s: float = 5.0,
) -> None:
    """Forever: drain the outbox, sleep when empty, back off while Kafka or the registry is
    down (the rows wait in the table; registration keeps working). `metrics` goes to the
    producer (kafka_produced_total, kafka_produce_seconds); the backlog gauges are refreshed
    every `gauge_every_s` whether or not Kafka answers, so a stuck outbox shows its age."""
    producer: EventProducer | None = None
    backoff = idle_s
    next_gauge = 0.0
    try:
        while True:
            if outbox_metrics and time.monotonic() >= next_gauge:
                await _refresh_gauges(db, outbox_metrics)
                next_gauge = time.monotonic() + gauge_every_s
            try:
                if producer is None:
                    candidate = EventProducer(
                        kafka,
                        AvroSerde(kafka.registry_url, auto_register=kafka.auto_register),
                        metrics=metrics,
                    )
                    await candidate.start()
                    producer = candidate
                sent = await relay_once(db, producer, outbox_metrics=outbox_metrics)
                backoff = idle_s
                if sent:
                    continue
            except Exception:
                log.exception("outbox relay failed, retrying")
                backoff = min(backoff * 2, 10.0)
            await asyncio.sleep(backoff)
    finally:
        if producer is not None:
            await producer.stop()
