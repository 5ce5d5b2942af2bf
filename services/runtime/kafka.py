"""Kafka for every service: aiokafka transport plus Avro serde against our schema registry.

Records are Avro in the Confluent wire format (magic byte + schema id), serialized by
confluent-kafka's AsyncAvroSerializer with TopicRecordNameStrategy subjects
(`<topic>-<record full name>`), so one topic carries several event types. The key is the
aggregate id (UTF-8). Headers carry the event id and the W3C trace context (`traceparent`,
`tracestate`) so consumers dedupe and continue the trace without decoding the value.

Producers are idempotent with acks=all: a broker retry never duplicates a record, and an
acknowledged record survives a leader change. Delivery stays at least once end to end
(an outbox relay may republish after a crash), so consumers dedupe by event id.

    serde = AvroSerde(cfg.registry_url)
    async with EventProducer(cfg, serde) as producer:
        meta = await producer.publish("shop.orders.v1", event, key=order_id,
                                      event_id=str(event.event_id), trace=trace)
    async with EventConsumer(cfg, serde, ["shop.orders.v1"], group_id="notification") as c:
        async for ev in c:        # ConsumedEvent: name, value (dict), event_id, trace, ...
            ...; await c.commit(ev)

Imports aiokafka and confluent_kafka; the domain layers never import this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import struct
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fastavro
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import RecordMetadata
from confluent_kafka.schema_registry import (
    AsyncSchemaRegistryClient,
    topic_record_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AsyncAvroDeserializer, AsyncAvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from services.runtime import tracing
from services.runtime.metrics import Metrics, Sample

HEADER_EVENT_ID = "event_id"
HEADER_EVENT_TYPE = "event_type"  # record full name, so routers need not decode the value
HEADER_TRACEPARENT = "traceparent"
HEADER_TRACESTATE = "tracestate"
HEADER_CONTENT_TYPE = "content-type"
CONTENT_TYPE_AVRO = b"application/vnd.confluent.avro"


@dataclass(frozen=True)
class KafkaConfig:
    """Where Kafka and the registry are. Services embed it and fill it from their own
    prefix with `KafkaConfig.from_env("ORDER")` (ORDER_KAFKA_BOOTSTRAP, ORDER_REGISTRY_URL)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    registry_url: str = "http://127.0.0.1:8085"
    client_id: str = "shopmesh"
    # CI registers schemas from schemas/avro; producers only look their ids up, so a schema
    # that was never checked for compatibility cannot reach a topic.
    auto_register: bool = False
    request_timeout_ms: int = 15000
    linger_ms: int = 5

    @classmethod
    def from_env(cls, prefix: str, environ: Mapping[str, str] | None = None) -> KafkaConfig:
        env = os.environ if environ is None else environ
        d = cls()
        try:
            return cls(
                bootstrap_servers=env.get(f"{prefix}_KAFKA_BOOTSTRAP", d.bootstrap_servers),
                registry_url=env.get(f"{prefix}_REGISTRY_URL", d.registry_url),
                client_id=env.get(f"{prefix}_KAFKA_CLIENT_ID", prefix.lower()),
                auto_register=env.get(f"{prefix}_KAFKA_AUTO_REGISTER", "false").lower()
                in ("1", "true", "yes"),
                request_timeout_ms=int(
                    env.get(f"{prefix}_KAFKA_REQUEST_TIMEOUT_MS", d.request_timeout_ms)
                ),
                linger_ms=int(env.get(f"{prefix}_KAFKA_LINGER_MS", d.linger_ms)),
            )
        except ValueError as exc:
            raise ValueError(f"{prefix}_KAFKA_*: {exc}") from None


@dataclass(frozen=True)
class TraceContext:
    """W3C trace context as carried in headers (and stored with outbox events)."""

    traceparent: str
    tracestate: str = ""

    def headers(self) -> list[tuple[str, bytes]]:
        out = [(HEADER_TRACEPARENT, self.traceparent.encode())]
        if self.tracestate:
            out.append((HEADER_TRACESTATE, self.tracestate.encode()))
        return out


def _record_name(record: Any) -> str:
    meta = getattr(record, "Meta", None)
    namespace = getattr(meta, "namespace", "")
    name = type(record).__name__
    return f"{namespace}.{name}" if namespace else name


def _event_types() -> tuple[dict[str, str], dict[str, type]]:
    """Schemas and generated classes of shop.events.v1 by record full name."""
    from shop.events import v1

    classes = {
        name: getattr(v1, name.rpartition(".")[2])
        for name in v1.SCHEMAS
        if hasattr(v1, name.rpartition(".")[2])
    }
    return dict(v1.SCHEMAS), classes


class AvroSerde:
    """Confluent-wire Avro for our event types; one per process (caches schema ids)."""

    def __init__(
        self,
        registry_url: str,
        *,
        auto_register: bool = False,
        schemas: Mapping[str, str] | None = None,
    ) -> None:
        self.client = AsyncSchemaRegistryClient({"url": registry_url})
        default_schemas, self._classes = _event_types()
        self._schemas = dict(schemas or default_schemas)
        self._auto_register = auto_register
        self._serializers: dict[str, AsyncAvroSerializer] = {}
        # Per writer schema id: (record full name, parsed schema or None: has references).
        self._readers: dict[int, tuple[str, Any]] = {}
        self._deserializer: AsyncAvroDeserializer | None = None
        self._lock = asyncio.Lock()

    async def _serializer(self, record_name: str) -> AsyncAvroSerializer:
        ser = self._serializers.get(record_name)
        if ser is None:
            async with self._lock:
                ser = self._serializers.get(record_name)
                if ser is None:
                    ser = await AsyncAvroSerializer(
                        self.client,
                        self._schemas[record_name],
                        conf={
                            "auto.register.schemas": self._auto_register,
                            "subject.name.strategy": topic_record_subject_name_strategy,
                        },
                    )
                    self._serializers[record_name] = ser
        return ser

    async def encode(self, topic: str, record: Any, record_name: str | None = None) -> bytes:
        """Serialize a generated event (AvroModel) or a plain dict (then name the record)."""
        if isinstance(record, Mapping):
            if record_name is None:
                raise ValueError("record_name is required for a dict record")
            value = dict(record)
        else:
            record_name = record_name or _record_name(record)
            value = record.to_dict()
        ser = await self._serializer(record_name)
        data = await ser(value, SerializationContext(topic, MessageField.VALUE))
        assert data is not None
        return data

    async def decode(self, topic: str, data: bytes) -> tuple[str, dict[str, Any]]:
        """(record full name, value) with the writer's schema, looked up by id.

        fastavro reads the value with the writer's schema, parsed once per id: what
        AsyncAvroDeserializer does underneath, without its per-record work for what our
        schemas do not use (34 -> 9 µs a record). A schema with references goes through
        AsyncAvroDeserializer, which resolves them."""
        if len(data) < 5 or data[0] != 0:
            raise ValueError("not Confluent wire format (missing magic byte)")
        schema_id = struct.unpack(">I", data[1:5])[0]
        reader = self._readers.get(schema_id)
        if reader is None:
            schema = await self.client.get_schema(schema_id)
            parsed = (
                None if schema.references else fastavro.parse_schema(json.loads(schema.schema_str))
            )
            reader = self._readers[schema_id] = (_schema_full_name(schema.schema_str), parsed)
        name, writer_schema = reader
        if writer_schema is None:
            if self._deserializer is None:
                self._deserializer = await AsyncAvroDeserializer(self.client)
            ctx = SerializationContext(topic, MessageField.VALUE)
            return name, await self._deserializer(data, ctx)
        return name, fastavro.schemaless_reader(io.BytesIO(data[5:]), writer_schema, None)

    def model(self, name: str, value: Mapping[str, Any]) -> Any:
        """The generated dataclass (shop.events.v1) for a decoded value."""
        return self._classes[name].parse_obj(dict(value))


def _schema_full_name(schema_str: str) -> str:
    data = json.loads(schema_str)
    name = data.get("name", "")
    ns = data.get("namespace")
    return name if "." in name or not ns else f"{ns}.{name}"


def _headers(
    event_id: str | None,
    record_name: str | None,
    trace: TraceContext | None,
    extra: Mapping[str, str | bytes] | None,
) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = [(HEADER_CONTENT_TYPE, CONTENT_TYPE_AVRO)]
    if event_id:
        out.append((HEADER_EVENT_ID, event_id.encode()))
    if record_name:
        out.append((HEADER_EVENT_TYPE, record_name.encode()))
    if trace is not None and trace.traceparent:
        out.extend(trace.headers())
    for k, v in (extra or {}).items():
        out.append((k, v if isinstance(v, bytes) else v.encode()))
    return out


class EventProducer:
    """Idempotent (acks=all) producer of Avro events; start/stop or `async with`. With
    `metrics`, counts sends by result and their latency; every send is a PRODUCER span whose
    context is the record's `traceparent` (child of `trace` when given, else of the current
    span)."""

    def __init__(
        self,
        config: KafkaConfig,
        serde: AvroSerde,
        *,
        metrics: Metrics | None = None,
        **producer_options: Any,
    ) -> None:
        self.config = config
        self.serde = serde
        self.metrics = metrics
        self._producer = AIOKafkaProducer(
            bootstrap_servers=config.bootstrap_servers,
            client_id=config.client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=config.linger_ms,
            request_timeout_ms=config.request_timeout_ms,
            **producer_options,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def send(
        self,
        topic: str,
        record: Any,
        *,
        key: str,
        event_id: str,
        trace: TraceContext | None = None,
        record_name: str | None = None,
        headers: Mapping[str, str | bytes] | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Enqueue one event; returns the delivery future (await it for the broker ack).
        Sends to one key keep their order (idempotent producer, same partition)."""
        name = record_name or (None if isinstance(record, Mapping) else _record_name(record))
        span = tracing.start_producer_span(
            topic, (trace.traceparent, trace.tracestate) if trace else None
        )
        span.set_attribute("messaging.message.id", event_id)
        try:
            value = await self.serde.encode(topic, record, name)
            tp, ts = tracing.traceparent(span)
            if tp:  # consumers continue from this send, which continues `trace`
                trace = TraceContext(tp, ts)
            fut = await self._producer.send(
                topic,
                value=value,
                key=key.encode(),
                headers=_headers(event_id, name, trace, headers),
            )
        except BaseException as exc:
            self._done(topic, span, time.perf_counter(), exc)
            raise
        started = time.perf_counter()
        fut.add_done_callback(
            lambda f: self._done(topic, span, started, f.exception() if not f.cancelled() else None)
        )
        return fut

    def _done(self, topic: str, span: Any, started: float, exc: BaseException | None) -> None:
        if exc is not None:
            span.set_status(tracing.Status(tracing.StatusCode.ERROR, type(exc).__name__))
        span.end()
        if self.metrics is not None:
            self.metrics.kafka_produced.labels(topic, "error" if exc else "ok").inc()
            if exc is None:
                self.metrics.kafka_produce_seconds.labels(topic).observe(
                    time.perf_counter() - started
                )

    async def publish(self, topic: str, record: Any, **kwargs: Any) -> RecordMetadata:
        """Send one event and wait for acks=all."""
        return await (await self.send(topic, record, **kwargs))

    async def send_raw(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> asyncio.Future[RecordMetadata]:
        """Forward an already-encoded record (retry topics, DLQ, replay) unchanged."""
        return await self._producer.send(topic, value=value, key=key, headers=list(headers))


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

    async def _decode(self, msg: Any) -> ConsumedEvent:
        headers = {k: v for k, v in (msg.headers or ())}
        if self.metrics is not None:
            self.metrics.kafka_consumed.labels(msg.topic).inc()
            self._next[TopicPartition(msg.topic, msg.partition)] = msg.offset + 1
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
        return [await self._decode(m) for msgs in batches.values() for m in msgs]

    async def __aiter__(self) -> AsyncIterator[ConsumedEvent]:
        async for msg in self._consumer:
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


async def watch_topic_sizes(
    config: KafkaConfig,
    topics: Sequence[str],
    metrics: Metrics,
    interval_s: float = 10.0,
) -> None:
    """Task: every `interval_s`, set `kafka_topic_messages{topic}` to the records retained in
    each topic (end - beginning offsets over its partitions): the DLQ size on dashboards.
    Never ends on a Kafka outage (a serve() task that ends stops the process)."""
    log = logging.getLogger(__name__)
    consumer: AIOKafkaConsumer | None = None
    try:
        while True:
            try:
                if consumer is None:
                    consumer = AIOKafkaConsumer(
                        bootstrap_servers=config.bootstrap_servers,
                        client_id=f"{config.client_id}-sizes",
                        enable_auto_commit=False,
                    )
                    await consumer.start()
                await consumer._client.force_metadata_update()  # topics created meanwhile
                for topic in topics:
                    parts = [
                        TopicPartition(topic, p)
                        for p in sorted(consumer.partitions_for_topic(topic) or ())
                    ]
                    size = 0
                    if parts:
                        begin = await consumer.beginning_offsets(parts)
                        end = await consumer.end_offsets(parts)
                        size = sum(max(0, end[tp] - begin[tp]) for tp in parts)
                    metrics.kafka_topic_messages.labels(topic).set(size)
            except Exception as exc:  # broker away: keep the last figures, try again
                log.warning("topic size probe failed", extra={"fields": {"error": repr(exc)}})
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await consumer.stop()
                    consumer = None
            await asyncio.sleep(interval_s)
    finally:
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
