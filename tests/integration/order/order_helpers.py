"""Helpers of the order integration tests: a tail of shop.orders.v1 that starts at the
current end (so a test sees only what it caused) and filters by order id."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import TopicPartition

from services.runtime.kafka import AvroSerde, ConsumedEvent, EventConsumer, KafkaConfig
from stack.topics import TOPICS

TOPIC = "shop.orders.v1"


class TopicTail:
    def __init__(self, cfg: KafkaConfig, topic: str = TOPIC) -> None:
        self.serde = AvroSerde(cfg.registry_url)
        # No group: partitions are assigned by hand and read from the end captured at start.
        self.consumer = EventConsumer(cfg, self.serde, [], group_id=None)
        self.topic = topic
        self.seen: list[ConsumedEvent] = []

    async def __aenter__(self) -> TopicTail:
        await self.consumer.start()
        raw = self.consumer.raw
        parts = next(t.partitions for t in TOPICS if t.name == self.topic)
        tps = [TopicPartition(self.topic, p) for p in range(parts)]
        raw.assign(tps)
        await raw.seek_to_end(*tps)
        for tp in tps:
            await raw.position(tp)  # resolve the end now, before the test produces
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def collect(
        self, keep: Callable[[ConsumedEvent], bool], done: Callable[[list], bool], wait_s: float
    ) -> list[ConsumedEvent]:
        """Read until `done(kept events)` or `wait_s` passed; returns the kept events."""
        loop = asyncio.get_running_loop()
        end = loop.time() + wait_s
        while not done([e for e in self.seen if keep(e)]) and loop.time() < end:
            self.seen += await self.consumer.getmany(timeout_ms=300)
        return [e for e in self.seen if keep(e)]
