"""Outbox relay: publishes pending `outbox` rows to Kafka (shop.users.v1) and marks them
sent after the broker's ack. Claims a batch with FOR UPDATE SKIP LOCKED, so several user
service instances relay in parallel without sending a row twice in the normal case. A crash
between ack and commit re-sends a row: delivery is at least once, consumers dedupe by
event id (it travels in the `event_id` header and in the record)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text

from services.runtime.db import Database
from services.runtime.kafka import AvroSerde, EventProducer, KafkaConfig, TraceContext
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


async def relay_once(db: Database, producer: EventProducer, batch: int = 100) -> int:
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
        await asyncio.gather(*acks)  # acks=all for every record before marking any sent
        await conn.execute(
            text("UPDATE outbox SET sent_at = now() WHERE event_id = ANY(:ids)"),
            {"ids": [r.event_id for r in rows]},
        )
    return len(rows)


async def run_relay(db: Database, kafka: KafkaConfig, idle_s: float = 0.5) -> None:
    """Forever: drain the outbox, sleep when empty, back off while Kafka or the registry is
    down (the rows wait in the table; registration keeps working)."""
    producer: EventProducer | None = None
    backoff = idle_s
    try:
        while True:
            try:
                if producer is None:
                    candidate = EventProducer(
                        kafka, AvroSerde(kafka.registry_url, auto_register=kafka.auto_register)
                    )
                    await candidate.start()
                    producer = candidate
                sent = await relay_once(db, producer)
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
