"""The ordered consumer loop that services with a single store share: a service gives a
handler (decode a record into its domain event, apply a run of events in one transaction)
and its names; the loop does the rest.

Per poll, each partition's records are handled in offset order. A record that cannot be
decoded, or decodes without the fields its schema promises, is poison: it goes to
<topic>.dlq at once (dlq.py's headers, x-dlq-group naming this group) and the partition
moves on. Anything else that fails (the store or the schema registry away) is retried in
place: the partition is sought back to the first record not done with, and the loop backs
off up to `retry_max_s`. A partition's offset is committed only past records that were
applied, recognised as applied before, ignored or dead-lettered, so a restart re-reads
exactly the records not done with; handlers dedupe by event id, because a commit that
fails after the work redelivers.

Retrying in place suits a consumer whose only dependency is its own store: a record that
fails for that reason would fail in any retry stage too. Notification, which also depends on
SMTP and other services per record, has its own staged retry topics (services/notification)
and shares only the dead-letter pieces.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Generic, Protocol, TypeVar

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter

from services.runtime.kafka.config import FetchPolicy
from services.runtime.kafka.consumer import ConsumedEvent, EventConsumer
from services.runtime.kafka.dlq import (
    carried_headers,
    classify_decode_error,
    dead_letter_headers,
    forward,
    one_line,
)
from services.runtime.kafka.producer import EventProducer
from services.runtime.tracing import consume_span

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.2

# The pipeline's consumers (the cart emptied, co-purchases counted) are not latency-critical:
# a record waits at most 1 s more on the broker, so that at 5-50 records/s a fetch, a pass of
# the loop and an offset commit serve a second's records instead of each record. 64 KiB is a
# hundred-odd OrderPlaced records: a backlog is not slowed. <PREFIX>_KAFKA_FETCH_* override it.
PIPELINE_FETCH = FetchPolicy(max_wait_ms=1000, min_bytes=64 * 1024)

E = TypeVar("E")


class PoisonRecordError(Exception):
    """A record no retry can handle: a handler's decode raises it for a malformed value."""


class RecordHandler(Protocol[E]):
    """What a service gives the pipeline."""

    def decode(self, ev: ConsumedEvent) -> E | None:
        """The domain event of a decoded record, None for a record type the service does
        not act on; raises PoisonRecordError when the value lacks what its schema promises."""
        ...

    async def apply(self, events: list[E]) -> Mapping[str, int]:
        """Applies the events (in order, one transaction); the count per outcome label
        (e.g. applied, duplicate). Raising leaves them to be retried."""
        ...


class ConsumerMetrics:
    """`<name>s` (records by outcome: the handler's labels plus ignored and dead_lettered)
    and `<name>_failures` (polls that left a record to retry), on the service registry."""

    def __init__(self, registry: CollectorRegistry, name: str, topic: str, outcomes: str) -> None:
        self.events = Counter(
            f"{name}s", f"{topic} records by outcome ({outcomes})", ["outcome"], registry=registry
        )
        self.failures = Counter(
            f"{name}_failures", "polls that left a record to retry in place", registry=registry
        )


class OrderedConsumer(Generic[E]):
    """One consumer group's loop over its partitions; `batch_events` > 1 applies up to that
    many consecutive events of a partition in one `apply` (one transaction)."""

    def __init__(
        self,
        consumer: EventConsumer,
        producer: EventProducer,
        handler: RecordHandler[E],
        metrics: ConsumerMetrics,
        *,
        dlq_topic: str,
        group_id: str,
        max_batch: int = 200,
        batch_events: int = 1,
        retry_max_s: float = 5.0,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.handler = handler
        self.metrics = metrics
        self.dlq_topic = dlq_topic
        self.group_id = group_id
        self.max_batch = max_batch
        self.batch_events = max(1, batch_events)
        self.retry_max_s = retry_max_s
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()  # set after the first poll answered

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Polls until stop(); never raises for a record or a broker error."""
        backoff = RETRY_FIRST_S
        while not self._stopping.is_set():
            try:
                batch = await self.consumer.getmany(timeout_ms=500, max_records=self.max_batch)
            except Exception:
                log.exception("poll failed")
                await asyncio.sleep(backoff)
                continue
            self.ready.set()
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
                    # Read again next poll; the records after it wait behind it (in order).
                    self.consumer.raw.seek(tp, events[done].offset)
                    failed = True
            if commit:
                try:
                    await self.consumer.commit_offsets(commit)
                except Exception:
                    log.exception("commit failed")  # redelivered; the event ids dedupe
            if failed:
                self.metrics.failures.inc()
                await asyncio.sleep(backoff)
                backoff = min(self.retry_max_s, backoff * 2)
            else:
                backoff = RETRY_FIRST_S

    def _decode(self, ev: ConsumedEvent) -> E | None:
        """The handler's event; raises PoisonRecordError, or _Retry for the registry away."""
        if ev.error is not None:
            failure = classify_decode_error(ev.error)
            if failure.transient:
                log.warning("cannot decode %s:%s@%s yet", ev.topic, ev.partition, ev.offset)
                raise _Retry
            raise PoisonRecordError(failure.message)
        return self.handler.decode(ev)

    async def _partition(self, records: list[ConsumedEvent]) -> int:
        """Handles one partition's records in order; how many leading records are done."""
        done = 0
        pending: list[tuple[int, E]] = []

        async def flush() -> bool:
            nonlocal done
            if not pending:
                return True
            if not await self._apply(records[pending[0][0]], [e for _, e in pending]):
                return False
            done = pending[-1][0] + 1
            pending.clear()
            return True

        for i, ev in enumerate(records):
            try:
                event = self._decode(ev)
            except PoisonRecordError as exc:
                if not await flush() or not await self._dead_letter(ev, str(exc)):
                    return done
                done = i + 1
                continue
            except _Retry:
                await flush()
                return done
            except Exception:
                log.exception("could not decode %s:%s@%s", ev.topic, ev.partition, ev.offset)
                await flush()
                return done
            if event is None:
                if not await flush():
                    return done
                self.metrics.events.labels("ignored").inc()
                done = i + 1
                continue
            pending.append((i, event))
            if len(pending) >= self.batch_events and not await flush():
                return done
        await flush()
        return done

    async def _apply(self, first: ConsumedEvent, events: list[E]) -> bool:
        """One `apply` of consecutive events, in a consume span continuing the first
        record's trace; False (to be retried) when it raised."""
        with consume_span(first, **{"messaging.consumer.group.name": self.group_id}):
            try:
                outcomes = await self.handler.apply(events)
            except Exception:
                log.exception(
                    "could not apply %s:%s@%s", first.topic, first.partition, first.offset
                )
                return False
        for outcome, count in outcomes.items():
            if count:
                self.metrics.events.labels(outcome).inc(count)
        return True

    async def _dead_letter(self, ev: ConsumedEvent, error: str) -> bool:
        """A copy on the DLQ, acknowledged by Kafka; False when Kafka refused it (the record
        is then retried like any transient failure)."""
        headers = dead_letter_headers(
            carried_headers(ev),
            reason="poison",
            error=error,
            source=(ev.topic, ev.partition, ev.offset),
            group=self.group_id,
        )
        with consume_span(ev, **{"messaging.consumer.group.name": self.group_id}):
            try:
                await forward(self.producer, self.dlq_topic, ev, headers)
            except Exception:
                log.exception("could not dead-letter %s:%s@%s", ev.topic, ev.partition, ev.offset)
                return False
        self.metrics.events.labels("dead_lettered").inc()
        log.warning(
            "dead-lettered",
            extra={"fields": {"topic": ev.topic, "offset": ev.offset, "error": one_line(error)}},
        )
        return True


class _Retry(Exception):
    """The record is to be read again (the registry is away)."""
