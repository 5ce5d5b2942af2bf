"""The consumer-group reader: decodes Avro (a record that cannot be decoded is surfaced, not
raised, so it can be dead-lettered), commits offsets explicitly after the work is done
(at least once), and reports its lag per partition.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from services.runtime.kafka.config import (
    HEADER_EVENT_ID,
    HEADER_TRACEPARENT,
    HEADER_TRACESTATE,
    KafkaConfig,
    TraceContext,
)
from services.runtime.kafka.serde import AvroSerde
from services.runtime.metrics import Metrics, Sample


@dataclass(frozen=True)
class ConsumedEvent:
    """One record as read. `error` is set (and name/value empty) when the value could not
    be decoded, so the consumer can dead-letter it instead of crashing."""

    topic: str
    partition: int
    offset: int
    key: str | None
    name: str
    value: dict[str, Any]
    event_id: str | None
    trace: TraceContext | None
    headers: dict[str, bytes]
    raw: bytes
    timestamp_ms: int
    error: Exception | None = field(default=None, compare=False)


def _text(raw: bytes) -> str:
    """Bytes from the wire as text; a producer outside our control may send anything, and a
    bad byte must not crash the consumer (the record still reaches the dead-letter path)."""
    return raw.decode("utf-8", "replace")


class EventConsumer:
    """Consumer-group reader that decodes Avro; offsets are committed explicitly after the
    work is done (at-least-once)."""

    def __init__(
        self,
        config: KafkaConfig,
        serde: AvroSerde,
        topics: Iterable[str],
        group_id: str | None,
        *,
        auto_offset_reset: str = "earliest",
        metrics: Metrics | None = None,
        **consumer_options: Any,
    ) -> None:
        self.serde = serde
        self.topics = list(topics)
        self.group_id = group_id or ""
        self.metrics = metrics
        self._next: dict[TopicPartition, int] = {}  # next offset per partition, for lag
        # Per assigned partition: the next offset not yet committed, and the end of the
        # partition when it was assigned (until a fetch reports the high watermark).
        self._committed: dict[TopicPartition, int] = {}
        self._ends: dict[TopicPartition, int] = {}
        self._consumer = AIOKafkaConsumer(
            *(self.topics if group_id is None else ()),
            bootstrap_servers=config.bootstrap_servers,
            client_id=config.client_id,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            isolation_level="read_committed",
            **consumer_options,
        )
        if group_id is not None and self.topics:
            self._consumer.subscribe(self.topics, listener=_SeedOnAssign(self))

    @property
    def raw(self) -> AIOKafkaConsumer:
        """The aiokafka consumer, for seek/assignment/pause."""
        return self._consumer

    async def start(self) -> None:
        await self._consumer.start()
        if self.metrics is not None:
            key = f"kafka_lag:{self.group_id}:{id(self)}"
            self.metrics.gauge_at_scrape(key, self._lag)

    async def stop(self) -> None:
        if self.metrics is not None:
            self.metrics.scrape_time.sources.pop(f"kafka_lag:{self.group_id}:{id(self)}", None)
        await self._consumer.stop()

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        """Seed the lag figures of newly assigned partitions from the group's committed
        offsets: without this, a backlog left by a restart shows no lag until the first
        commit (or read), i.e. until it is mostly gone."""
        if not assigned:
            return
        tps = sorted(assigned)
        ends = await self._consumer.end_offsets(tps)
        for tp in tps:
            # The committed offset, or where auto_offset_reset starts a new group.
            pos = await self._consumer.position(tp)
            self._committed[tp] = self._next[tp] = pos
            self._ends[tp] = ends[tp]

    def _revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:  # another member may move them on: re-seed if they come back
            self._committed.pop(tp, None)
            self._next.pop(tp, None)
            self._ends.pop(tp, None)

    def _high(self, tp: TopicPartition) -> int | None:
        high = self._consumer.highwater(tp)
        return high if high is not None else self._ends.get(tp)

    def backlog(self) -> dict[TopicPartition, int]:
        """Per assigned partition: records not yet committed (high watermark - committed
        offset), from the moment of assignment on; partitions not seeded yet are left out."""
        out = {}
        for tp in self._consumer.assignment():
            high, pos = self._high(tp), self._committed.get(tp)
            if high is not None and pos is not None:
                out[tp] = max(0, high - pos)
        return out

    async def commit_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit these next-offsets (manual commit) and count them done for `backlog`."""
        await self._consumer.commit(dict(offsets))
        self._committed.update(offsets)

    def _lag(self) -> Iterator[Sample]:
        """Per assigned partition: high watermark (of the last fetch) - next offset to read."""
        what = "records behind the end of the partition, per consumer group"
        for tp in sorted(self._consumer.assignment()):
            high, nxt = self._high(tp), self._next.get(tp)
            if high is None or nxt is None:
                continue
            labels = {"group": self.group_id, "topic": tp.topic, "partition": str(tp.partition)}
            yield "kafka_consumer_lag", what, labels, float(max(0, high - nxt))

    async def __aenter__(self) -> EventConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _count(self, tp: TopicPartition, msgs: list[Any]) -> None:
        """kafka_consumed and the lag's next offset, once per partition's run of records."""
        if self.metrics is not None and msgs:
            self.metrics.kafka_consumed.labels(tp.topic).inc(len(msgs))
            self._next[tp] = msgs[-1].offset + 1

    async def _decode(self, msg: Any) -> ConsumedEvent:
        headers = {k: v for k, v in (msg.headers or ())}
        tp = headers.get(HEADER_TRACEPARENT)
        trace = TraceContext(_text(tp), _text(headers.get(HEADER_TRACESTATE, b""))) if tp else None
        event_id = headers.get(HEADER_EVENT_ID)
        name, value, error = "", {}, None
        try:
            name, value = await self.serde.decode(msg.topic, msg.value)
        except Exception as exc:  # poison record: surfaced, not raised
            error = exc
        return ConsumedEvent(
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=_text(msg.key) if msg.key is not None else None,
            name=name,
            value=value,
            event_id=_text(event_id) if event_id else None,
            trace=trace,
            headers=headers,
            raw=msg.value,
            timestamp_ms=msg.timestamp,
            error=error,
        )

    async def getmany(self, timeout_ms: int = 1000, max_records: int = 500) -> list[ConsumedEvent]:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        for tp, msgs in batches.items():
            self._count(tp, msgs)
        return [await self._decode(m) for msgs in batches.values() for m in msgs]

    async def __aiter__(self) -> AsyncIterator[ConsumedEvent]:
        async for msg in self._consumer:
            self._count(TopicPartition(msg.topic, msg.partition), [msg])
            yield await self._decode(msg)

    async def commit(self, event: ConsumedEvent | None = None) -> None:
        """Commit past `event` (its partition only), or everything consumed so far."""
        if event is None:
            await self._consumer.commit()
            self._committed.update(self._next)
        else:
            tp = TopicPartition(event.topic, event.partition)
            await self.commit_offsets({tp: event.offset + 1})


class _SeedOnAssign(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka awaits these around each rebalance, before the next fetch."""

    def __init__(self, consumer: EventConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.consumer._revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            await self.consumer._assigned(assigned)
        except Exception:  # lag figures only: never fail a rebalance over them
            logging.getLogger(__name__).warning("could not seed lag", exc_info=True)
