"""Kafka side of the notification service: the main consumer, the retry stages, the DLQ.

Stage 0 reads the event topics (group `<group>`); stage N reads `<topic>.retry.N` (group
`<group>.retry.N`) and runs a record only once `x-retry-due-ms` has passed: until then
that partition is paused and the consumer keeps serving the others, so a waiting record
never blocks anything but the records behind it in the same retry partition (which are
due even later). Stage 0 works on a whole poll (up to NOTIFICATION_MAX_BATCH records) at
once: records of one key (one order, one user) in order, all keys concurrently. That is what
lets the adapters batch: the poll's claims go to PostgreSQL as one statement, its lookups
share a short-lived cache, and the Notifier bounds the emails in flight over the kept-open
SMTP connections. Offsets are committed (manual commit) once per poll, only after every
record up to them was sent and logged, forwarded to a retry topic, or dead-lettered, each
acked by Kafka (acks=all): a crash anywhere redelivers, and the notification log drops the
duplicate.

Record routing on failure (domain errors decide):
  TransientError -> <topic>.retry.(N+1), or the DLQ after the last stage ("retries-exhausted")
  PermanentError -> <topic>.dlq at once
  anything else  -> treated as transient (a bug must not block a partition, nor lose mail)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence

from aiokafka import TopicPartition

from services.notification.domain import (
    ClaimHeldError,
    PermanentError,
    TransientError,
)
from services.notification.events import to_domain
from services.notification.routing import (
    H_ATTEMPT,
    H_DUE,
    H_LAST_ERROR,
    H_ORIGIN_OFFSET,
    H_ORIGIN_PARTITION,
    H_ORIGIN_TOPIC,
    OUR_HEADERS,
    NotificationMetrics,
    Topology,
    classify_decode_error,
)
from services.notification.service import Notifier, Outcome
from services.runtime.kafka import ConsumedEvent, EventConsumer, EventProducer
from services.runtime.kafka.dlq import (
    carried_headers,
    dead_letter_headers,
    forward,
    header_text,
    one_line,
)
from services.runtime.tracing import consume_span

log = logging.getLogger(__name__)


class Pipeline:
    """What happens to one record: notify, or forward to a retry stage or the DLQ."""

    def __init__(
        self,
        notifier: Notifier,
        producer: EventProducer,
        topology: Topology,
        metrics: NotificationMetrics,
    ) -> None:
        self.notifier = notifier
        self.producer = producer
        self.topology = topology
        self.metrics = metrics

    async def process(self, ev: ConsumedEvent, stage: int) -> None:
        # The producer's trace continues here: logs below carry the order's trace id.
        with consume_span(ev, **{"shop.retry_stage": stage}):
            await self._process(ev, stage)

    async def _process(self, ev: ConsumedEvent, stage: int) -> None:
        base = self.topology.base_of(ev.topic)
        attempts = int(header_text(ev.headers, H_ATTEMPT, "0") or 0) + 1
        self.metrics.consumed.labels(base, str(stage), ev.name or "undecodable").inc()
        started = time.perf_counter()
        try:
            if ev.error is not None:
                raise classify_decode_error(ev.error)
            event = to_domain(ev.name, ev.value)
            if event is None:
                return  # a record type this service does not act on
            outcome = await self.notifier.handle(event)
        except PermanentError as exc:
            await self.dead_letter(ev, base, exc.reason, str(exc), attempts)
            return
        except ClaimHeldError as exc:
            # Another worker's sending claim: it will be sent, released, or go stale (its
            # worker died mid-send) and be taken over. Not a failure: it never exhausts.
            await self.retry_or_give_up(ev, base, stage, attempts, exc.reason, str(exc), held=True)
            return
        except TransientError as exc:
            await self.retry_or_give_up(ev, base, stage, attempts, exc.reason, str(exc))
            return
        except Exception as exc:  # a bug or an unmapped adapter error: retry, then DLQ
            log.exception("unexpected error processing %s@%s", ev.topic, ev.offset)
            await self.retry_or_give_up(
                ev, base, stage, attempts, "internal-error", f"{type(exc).__name__}: {exc}"
            )
            return
        if outcome is Outcome.SENT:
            kind = ev.name.rpartition(".")[2]
            self.metrics.sent.labels(base, kind).inc()
            log.info("email sent", extra={"fields": {"event_id": ev.event_id, "kind": kind}})
            self.metrics.send_seconds.labels(kind).observe(time.perf_counter() - started)
            if ev.timestamp_ms > 0:
                age = max(0.0, time.time() - ev.timestamp_ms / 1000)
                self.metrics.event_to_email_seconds.labels(base).observe(age)
        elif outcome is Outcome.DUPLICATE:
            self.metrics.duplicates.labels(base).inc()

    def _carried(self, ev: ConsumedEvent) -> list[tuple[str, bytes]]:
        """The record's own headers (event id, trace context...) without our bookkeeping."""
        return carried_headers(ev, OUR_HEADERS)

    def _origin(self, ev: ConsumedEvent) -> tuple[str, str, str]:
        if H_ORIGIN_TOPIC in ev.headers:
            return (
                header_text(ev.headers, H_ORIGIN_TOPIC),
                header_text(ev.headers, H_ORIGIN_PARTITION),
                header_text(ev.headers, H_ORIGIN_OFFSET),
            )
        return ev.topic, str(ev.partition), str(ev.offset)

    async def retry_or_give_up(
        self,
        ev: ConsumedEvent,
        base: str,
        stage: int,
        attempts: int,
        reason: str,
        error: str,
        *,
        held: bool = False,
    ) -> None:
        """The next retry stage, or the DLQ after the last. A held claim (`held`) goes back
        to the last stage instead of the DLQ, for as long as the claim is held: a claim of
        a killed worker goes stale after NOTIFICATION_STALE_CLAIM_S (120 s), longer than
        the stages' delays add up to (5 s + 30 s), and its email must still go out."""
        if stage >= self.topology.stages and not held:
            await self.dead_letter(ev, base, "retries-exhausted", f"{reason}: {error}", attempts)
            return
        nxt = min(stage + 1, self.topology.stages)
        due_ms = int((time.time() + self.topology.retry_delays_s[nxt - 1]) * 1000)
        topic, partition, offset = self._origin(ev)
        headers = [
            *self._carried(ev),
            (H_ATTEMPT, str(attempts).encode()),
            (H_DUE, str(due_ms).encode()),
            (H_LAST_ERROR, one_line(f"{reason}: {error}").encode()),
            (H_ORIGIN_TOPIC, topic.encode()),
            (H_ORIGIN_PARTITION, partition.encode()),
            (H_ORIGIN_OFFSET, offset.encode()),
        ]
        await self._forward(self.topology.retry_topic(base, nxt), ev, headers)
        self.metrics.retried.labels(base, reason).inc()
        log.info(
            "retry scheduled",
            extra={"fields": {"topic": ev.topic, "offset": ev.offset, "stage": nxt,
                              "reason": reason, "event_id": ev.event_id}},
        )  # fmt: skip

    async def dead_letter(
        self, ev: ConsumedEvent, base: str, reason: str, error: str, attempts: int
    ) -> None:
        headers = dead_letter_headers(
            self._carried(ev), reason=reason, error=error, source=self._origin(ev),
            attempts=attempts,
        )  # fmt: skip
        await self._forward(self.topology.dlq_topic(base), ev, headers)
        self.metrics.dead_lettered.labels(base, reason).inc()
        log.warning(
            "dead-lettered",
            extra={"fields": {"topic": ev.topic, "offset": ev.offset, "reason": reason,
                              "error": one_line(error), "event_id": ev.event_id}},
        )  # fmt: skip

    async def _forward(
        self, topic: str, ev: ConsumedEvent, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        # Returns once Kafka acked the copy: the source offset is committed only after.
        await forward(self.producer, topic, ev, headers)


class StageWorker:
    """One consumer group reading one stage; `delay_s` > 0 makes it a retry stage."""

    def __init__(
        self,
        stage: int,
        consumer: EventConsumer,
        pipeline: Pipeline,
        *,
        max_batch: int = 200,
        idle_poll_ms: int = 500,
    ) -> None:
        self.stage = stage
        self.consumer = consumer
        self.pipeline = pipeline
        self.max_batch = max_batch
        self.idle_poll_ms = idle_poll_ms
        self._resume_at: dict[TopicPartition, float] = {}
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    def _resume_due(self) -> int:
        """Resume partitions whose waiting record is due; ms until the next one is."""
        now = time.time()
        for tp, at in list(self._resume_at.items()):
            if at <= now:
                del self._resume_at[tp]
                if tp in self.consumer.raw.assignment():
                    self.consumer.raw.resume(tp)
        if not self._resume_at:
            return self.idle_poll_ms
        return max(1, min(self.idle_poll_ms, int((min(self._resume_at.values()) - now) * 1000)))

    async def run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            timeout = self._resume_due()
            try:
                batch = await self.consumer.getmany(timeout_ms=timeout, max_records=self.max_batch)
            except Exception:
                log.exception("poll failed (stage %s)", self.stage)
                await asyncio.sleep(backoff)
                continue
            self.ready.set()
            # Before the work, so a backlog (after a restart, say) shows while it drains.
            self._update_lag()
            if not batch:
                continue
            by_tp: dict[TopicPartition, list[ConsumedEvent]] = defaultdict(list)
            for ev in batch:
                by_tp[TopicPartition(ev.topic, ev.partition)].append(ev)
            results = await asyncio.gather(*(self._partition(tp, evs) for tp, evs in by_tp.items()))
            commit = {tp: nxt for tp, nxt, _ in results if nxt is not None}
            if commit:
                try:
                    await self.consumer.commit_offsets(commit)
                except Exception:
                    # Not committed: these records come again and the log drops them.
                    log.exception("commit failed (stage %s)", self.stage)
            self._update_lag()
            if not all(ok for _, _, ok in results):
                await asyncio.sleep(backoff)

    async def _partition(
        self, tp: TopicPartition, events: list[ConsumedEvent]
    ) -> tuple[TopicPartition, int | None, bool]:
        """(tp, next offset to commit or None, False if routing failed)."""
        if self.stage == 0:
            return await self._by_key(tp, events)
        nxt: int | None = None
        raw = self.consumer.raw
        for ev in events:
            due = int(header_text(ev.headers, H_DUE, "0") or 0) / 1000
            if due > time.time():
                # Not yet: park the partition at this record, serve the others meanwhile.
                raw.seek(tp, ev.offset)
                raw.pause(tp)
                self._resume_at[tp] = due
                break
            if not await self._one(tp, ev):
                return tp, nxt, False
            nxt = ev.offset + 1
        return tp, nxt, True

    async def _by_key(
        self, tp: TopicPartition, events: list[ConsumedEvent]
    ) -> tuple[TopicPartition, int | None, bool]:
        """Records of one key in order (an order's emails keep their order), different keys
        concurrently: every key's first record is claimed in the same statement, and the
        Notifier bounds the emails in flight."""
        by_key: dict[str | None, list[ConsumedEvent]] = defaultdict(list)
        for ev in events:
            by_key[ev.key].append(ev)
        failed: list[int] = []

        async def run_key(evs: list[ConsumedEvent]) -> None:
            for ev in evs:
                ok = await self._one(tp, ev)
                if not ok:
                    failed.append(ev.offset)
                    return

        await asyncio.gather(*(run_key(evs) for evs in by_key.values()))
        if not failed:
            return tp, events[-1].offset + 1, True
        # Commit below the first failure only; records after it that did succeed come
        # again and the log drops them.
        first = min(failed)
        self.consumer.raw.seek(tp, first)
        return tp, (first if first > events[0].offset else None), False

    async def _one(self, tp: TopicPartition, ev: ConsumedEvent) -> bool:
        try:
            await self.pipeline.process(ev, self.stage)
        except Exception:
            # Kafka refused the retry/DLQ copy: keep the record, try it again shortly.
            log.exception("could not route %s:%s@%s", tp.topic, tp.partition, ev.offset)
            self.consumer.raw.seek(tp, ev.offset)
            return False
        return True

    def _update_lag(self) -> None:
        """Lag = high watermark - next offset to commit, summed per topic. Seeded from the
        committed offsets when partitions are assigned (EventConsumer.backlog), so a
        backlog shows from the start, not only after the first commit."""
        lag: dict[str, int] = defaultdict(int)
        for tp, behind in self.consumer.backlog().items():
            lag[tp.topic] += behind
        for topic, value in lag.items():
            base = self.pipeline.topology.base_of(topic)
            self.pipeline.metrics.lag.labels(base, str(self.stage)).set(value)
