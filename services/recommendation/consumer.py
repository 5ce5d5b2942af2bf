"""The OrderPlaced consumer: counts co-purchases.

It reads shop.orders.v1 in its own consumer group (RECOMMENDATION_GROUP_ID), in order per
partition, counts a poll's OrderPlaced events of a partition in one transaction (at most
RECOMMENDATION_TX_EVENTS), and commits a partition's offset only past records that were counted,
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
from services.recommendation.domain import OrderPlaced
from services.recommendation.events import MalformedEventError, order_placed
from services.recommendation.ports import CoPurchaseUnitOfWork
from services.runtime.kafka import ConsumedEvent, EventConsumer, EventProducer
from services.runtime.tracing import consume_span

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.2


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
        tx_events: int = 200,
        retry_max_s: float = 5.0,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.uow = uow
        self.metrics = metrics
        self.dlq_topic = dlq_topic
        self.group_id = group_id
        self.max_batch = max_batch
        self.tx_events = tx_events
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
                done = await self._partition(events)
                if done:
                    commit[tp] = events[done - 1].offset + 1
                if done < len(events):
                    self.consumer.raw.seek(tp, events[done].offset)  # again next poll, in order
                    failed = True
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

    def _classify(self, ev: ConsumedEvent) -> tuple[str, OrderPlaced | str | None]:
        """("event", OrderPlaced), ("ignore", None), ("poison", why) or ("retry", None)."""
        if ev.error is not None:
            if is_transient_decode_error(ev.error):
                log.warning("cannot decode %s:%s@%s yet", ev.topic, ev.partition, ev.offset)
                return "retry", None
            return "poison", f"undecodable: {type(ev.error).__name__}"
        try:
            event = order_placed(ev.name, ev.value)
        except MalformedEventError as exc:
            return "poison", str(exc)
        return ("ignore", None) if event is None else ("event", event)

    async def _partition(self, records: list[ConsumedEvent]) -> int:
        """Handles one partition's records in order: OrderPlaced events counted together, up
        to `tx_events` per transaction; returns how many leading records are done with."""
        done = 0
        pending: list[tuple[int, OrderPlaced]] = []

        async def flush() -> bool:
            nonlocal done
            if not pending:
                return True
            if not await self._count(records[pending[0][0]], [e for _, e in pending]):
                return False
            done = pending[-1][0] + 1
            pending.clear()
            return True

        for i, ev in enumerate(records):
            kind, value = self._classify(ev)
            if kind == "event":
                pending.append((i, value))  # type: ignore[arg-type]
                if len(pending) >= self.tx_events and not await flush():
                    return done
                continue
            if not await flush() or kind == "retry":
                return done
            if kind == "poison" and not await self._dead_letter(ev, str(value)):
                return done
            if kind == "ignore":
                self.metrics.events.labels("ignored").inc()
            done = i + 1
        await flush()
        return done

    async def _count(self, first: ConsumedEvent, events: list[OrderPlaced]) -> bool:
        """One transaction for the events; False (to be retried) when it failed."""
        with consume_span(first, **{"messaging.consumer.group.name": self.group_id}):
            try:
                counted = await service.orders_placed(events, self.uow())
            except Exception:
                log.exception(
                    "could not count %s:%s@%s", first.topic, first.partition, first.offset
                )
                return False
        self.metrics.events.labels("counted").inc(counted)
        self.metrics.events.labels("duplicate").inc(len(events) - counted)
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
