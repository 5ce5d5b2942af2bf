"""Spans of the stores: a unit of work's `db.read` / `db.write` span, opt-in per-statement SQL
spans, and the PRODUCER / CONSUMER spans of Kafka records.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from services.runtime.tracing.context import extract
from services.runtime.tracing.provider import (
    TRACEPARENT,
    TRACESTATE,
    tracer,
)


@contextmanager
def db_span(name: str, target: str, **attributes: Any) -> Iterator[Span]:
    """A database span: a unit of work's transaction (`db.read` / `db.write`) on `target`
    (primary/replica), or one document-store operation (attributes override db.system)."""
    with tracer().start_as_current_span(
        name,
        kind=SpanKind.CLIENT,
        attributes={"db.system": "postgresql", "db.target": target, **attributes},
    ) as span:
        yield span


def instrument_engine(engine: Any, role: str, database: str) -> None:
    """One CLIENT span per SQL statement of a SQLAlchemy (async) engine."""
    from sqlalchemy import event

    sync_engine = getattr(engine, "sync_engine", engine)

    def before(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        ctx._shop_span = tracer().start_span(
            f"{verb} {database}",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system": "postgresql",
                "db.name": database,
                "db.target": role,
                "db.statement": statement[:500],
            },
        )

    def after(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        span = getattr(ctx, "_shop_span", None)
        if span is not None:
            span.end()

    def on_error(exc_ctx: Any) -> None:
        span = getattr(exc_ctx.execution_context, "_shop_span", None)
        if span is not None:
            span.set_status(Status(StatusCode.ERROR, type(exc_ctx.original_exception).__name__))
            span.end()

    event.listen(sync_engine, "before_cursor_execute", before)
    event.listen(sync_engine, "after_cursor_execute", after)
    event.listen(sync_engine, "handle_error", on_error)


# ---------------------------------------------------------------- Kafka


def start_producer_span(topic: str, parent: tuple[str, str] | None = None) -> Span:
    """The PRODUCER span of one send. `parent` is a stored (traceparent, tracestate), e.g.
    the request that wrote an outbox event; without it the current span is the parent."""
    ctx = None
    links: list[Link] = []
    if parent and parent[0]:
        ctx = extract({TRACEPARENT: parent[0], TRACESTATE: parent[1]})
        current = trace.get_current_span().get_span_context()
        if current.is_valid:
            links.append(Link(current))  # the relay's own batch, if it has one
    return tracer().start_span(
        f"publish {topic}",
        context=ctx,
        kind=SpanKind.PRODUCER,
        links=links,
        attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
    )


@contextmanager
def consume_span(record: Any, **attributes: Any) -> Iterator[Span]:
    """CONSUMER span around processing one consumed record (a runtime.kafka.ConsumedEvent or
    anything with topic/partition/offset/headers), child of its `traceparent` header; made
    current, so logs inside carry the producer's trace id."""
    headers = getattr(record, "headers", None) or {}
    span_attributes = {
        "messaging.system": "kafka",
        "messaging.destination.name": getattr(record, "topic", ""),
        "messaging.kafka.partition": getattr(record, "partition", -1),
        "messaging.kafka.offset": getattr(record, "offset", -1),
        **attributes,
    }
    event_id = getattr(record, "event_id", None)
    if event_id:
        span_attributes["messaging.message.id"] = event_id
    with tracer().start_as_current_span(
        f"process {getattr(record, 'topic', '')}",
        context=extract(headers),
        kind=SpanKind.CONSUMER,
        attributes=span_attributes,
    ) as span:
        yield span
