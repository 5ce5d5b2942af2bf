"""What the relay sends with: the topic and batch defaults, the Avro record of a stored event,
and the producer that connects lazily (Kafka being down never stops the order service).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from services.runtime.kafka import EventProducer
from shop.topology import ORDERS_TOPIC

log = logging.getLogger(__name__)

TOPIC = ORDERS_TOPIC
BATCH = 500  # claims per send round
MEMORY_CAP = 50_000  # claims held in memory while Kafka is down; the rest wait in the store


def to_record(entry: dict[str, Any]) -> Any:
    """The generated Avro type (shop.events.v1) for an outbox entry."""
    from shop.events import v1

    cls = getattr(v1, entry["type"].rpartition(".")[2])
    return cls.parse_obj(entry["data"])


class LazyProducer:
    """The relay's producer as a runtime Resource that does not connect at open(): `get()`
    starts it on first use (the relay retries), so the process starts without Kafka."""

    def __init__(self, make: Callable[[], EventProducer]) -> None:
        self.make = make
        self.producer: EventProducer | None = None
        self.publishing = False  # connected and the last publish went through

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    def health_checks(self) -> dict[str, tuple[Any, bool]]:
        async def kafka() -> bool:
            return self.producer is not None and self.publishing

        return {"kafka": (kafka, False)}  # optional: orders are placed without it

    async def get(self) -> EventProducer:
        if self.producer is None:
            candidate = self.make()
            try:
                await candidate.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await candidate.stop()  # aiokafka leaves its client open on a failed start
                raise
            self.producer = candidate
            self.publishing = True
        return self.producer

    async def reset(self) -> None:
        """Drop the producer after failed sends: the next `get()` starts a new one.
        aiokafka's idempotent producer does not recover from a batch that failed (a broker
        restart): every later send fails with OutOfOrderSequenceNumber (measured: 0 of
        5,000 sends in the 30 s after the broker came back). A new producer id starts its
        sequences afresh; what it sends again may be a duplicate, with the same event id."""
        producer, self.producer = self.producer, None
        self.publishing = False
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)
