"""The idempotent (acks=all) event producer: a broker retry never duplicates a record, and
an acknowledged record survives a leader change. The key is the aggregate id (UTF-8);
headers carry the event id, the record name and the trace context.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from services.runtime import tracing
from services.runtime.kafka.config import (
    CONTENT_TYPE_AVRO,
    HEADER_CONTENT_TYPE,
    HEADER_EVENT_ID,
    HEADER_EVENT_TYPE,
    KafkaConfig,
    TraceContext,
)
from services.runtime.kafka.serde import AvroSerde, _record_name
from services.runtime.metrics import Metrics


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
