"""The OrderPlaced consumer: counts co-purchases.

It reads shop.orders.v1 in its own consumer group (RECOMMENDATION_GROUP_ID), in order per
partition, and commits a partition's offset only past records that were counted,
recognised as counted before (the event id, recorded with the counts), ignored (other
event types) or dead-lettered. A record that cannot be decoded or lacks its fields goes
to <topic>.dlq at once. Anything else (its database or the registry away) is retried in
place, backing off up to RECOMMENDATION_RETRY_MAX_S: no record is skipped, none counted
twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable

from aiokafka import TopicPartition
from confluent_kafka.schema_registry.error import SchemaRegistryError
from prometheus_client import CollectorRegistry, Counter

from services.recommendation import service
from services.recommendation.events import MalformedEventError, order_placed
from services.recommendation.ports import CoPurchaseUnitOfWork
from services.runtime.kafka import ConsumedEvent, EventConsumer, EventProducer
from services.runtime.tracing import consume_span

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.2


class PoisonRecordError(Exception):
    """A record no retry can handle."""


def is_transient_decode_error(exc: Exception) -> bool:
    """The registry away (retry) versus a value nobody can decode (dead-letter)."""
    if isinstance(exc, SchemaRegistryError):
        return not 400 <= exc.http_status_code < 500
    module = type(exc).__module__
    return isinstance(exc, (OSError, TimeoutError)) or module.startswith(("httpx", "httpcore"))


class EventMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "recommendation_order_events",
            "shop.orders.v1 records by outcome (counted, duplicate, ignored, dead_lettered)",
            ["outcome"],
            registry=registry,
        )


class OrderPlacedConsumer:
    def __init__(
        self,
        consumer: EventConsumer,
        producer: EventProducer,
        uow: Callable[[], CoPurchaseUnitOfWork],
        metrics: EventMetrics,
        *,
        dlq_topic: str,
        group_id: str,
        max_batch: int = 200,
        retry_max_s: float = 5.0,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.uow = uow
        self.metrics = metrics
        self.dlq_topic = dlq_topic
        self.group_id = group_id
        self.max_batch = max_batch
        self.retry_max_s = retry_max_s
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        backoff = RETRY_FIRST_S
        while not self._stopping.is_set():
            try:
                batch = await self.consumer.getmany(timeout_ms=500, max_records=self.max_batch)
            except Exception:
                log.exception("poll failed")
                await asyncio.sleep(backoff)
                continue
            by_tp: dict[TopicPartition, list[ConsumedEvent]] = defaultdict(list)
            for ev in batch:
                by_tp[TopicPartition(ev.topic, ev.partition)].append(ev)
            commit: dict[TopicPartition, int] = {}
            failed = False
            for tp, events in by_tp.items():
                for ev in events:
                    if not await self._one(ev):
                        self.consumer.raw.seek(tp, ev.offset)  # again next poll, in order
                        failed = True
                        break
                    commit[tp] = ev.offset + 1
            if commit:
                try:
                    await self.consumer.commit_offsets(commit)
                except Exception:
                    log.exception("commit failed")  # redelivered; the event ids dedupe
            if failed:
                await asyncio.sleep(backoff)
                backoff = min(self.retry_max_s, backoff * 2)
            else:
                backoff = RETRY_FIRST_S

    async def _one(self, ev: ConsumedEvent) -> bool:
        """True when the record is done with (its offset may be committed)."""
        with consume_span(ev, **{"messaging.consumer.group.name": self.group_id}):
            try:
                if ev.error is not None:
                    if is_transient_decode_error(ev.error):
                        raise ev.error
                    raise PoisonRecordError(f"undecodable: {type(ev.error).__name__}")
                try:
                    event = order_placed(ev.name, ev.value)
                except MalformedEventError as exc:
                    raise PoisonRecordError(str(exc)) from None
                if event is None:
                    self.metrics.events.labels("ignored").inc()
                    return True
                counted = await service.order_placed(event, self.uow())
            except PoisonRecordError as exc:
                return await self._dead_letter(ev, str(exc))
            except Exception:
                log.exception("could not count %s:%s@%s", ev.topic, ev.partition, ev.offset)
                return False
        self.metrics.events.labels("counted" if counted else "duplicate").inc()
        return True

    async def _dead_letter(self, ev: ConsumedEvent, error: str) -> bool:
        headers = [
            *((k, v) for k, v in ev.headers.items() if not k.startswith("x-dlq-")),
            ("x-dlq-reason", b"poison"),
            ("x-dlq-error", " ".join(error.split())[:300].encode()),
            ("x-dlq-group", self.group_id.encode()),
            ("x-dlq-source-topic", ev.topic.encode()),
            ("x-dlq-source-partition", str(ev.partition).encode()),
            ("x-dlq-source-offset", str(ev.offset).encode()),
            ("x-dlq-timestamp-ms", str(int(time.time() * 1000)).encode()),
        ]
        key = ev.key.encode() if ev.key is not None else None
        try:
            ack = await self.producer.send_raw(self.dlq_topic, ev.raw, key=key, headers=headers)
            await ack  # the offset moves on only once Kafka holds the copy
        except Exception:
            log.exception("could not dead-letter %s:%s@%s", ev.topic, ev.partition, ev.offset)
            return False
        self.metrics.events.labels("dead_lettered").inc()
        return True
