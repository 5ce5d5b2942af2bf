"""OpenTelemetry tracing of one service process: provider, exporter and the span helpers the
runtime's server, gRPC clients, database and Kafka code call.

Spans: one SERVER span per RPC (parent from the caller's `traceparent` metadata), one CLIENT
span per outgoing call (`instrument_channel`, which also puts `traceparent` in the request
metadata), one span per unit of work (and per SQL statement when asked), one PRODUCER span
per Kafka send (its context is the record's `traceparent` header), one CONSUMER span per record
(`consume_span`, the child of that header). So one order's trace runs from the edge request
through order, product, user, the outbox relay (child of the traceparent stored with the
event) and the notification email.

Sampling: SHOPMESH_TRACE_SAMPLE (0..1, default 1.0) is the share of new traces recorded,
parent-based (a caller's sampled flag wins, so a trace is never cut in half). An unsampled
call still has a trace id for its logs and x-request-id; it just exports no spans.
Per-statement SQL spans are opt-in (`instrument_engine`, <SERVICE>_DB_TRACE_STATEMENTS): the
unit of work's `db.read` / `db.write` span is enough on the hot path.

Export: OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set (gRPC, or HTTP when
OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf); otherwise one JSON object per span, appended to
`<state dir>/traces/<service>.jsonl` (SHOPMESH_TRACE_DIR, else $SHOPMESH_STATE_DIR/traces,
else .stack/traces under the repo), which the tests and the ops tooling read.

The provider is installed once per process by `install()` (serve() does it); until then
every helper works on OpenTelemetry's no-op tracer, so unit tests and tools pay nothing.
Imports opentelemetry only; never grpclib servers, SQLAlchemy sessions or aiokafka.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TextIO

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_PROPAGATOR = TraceContextTextMapPropagator()
_SCOPE = _SCOPE_NAME = "services.runtime"
_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT


class _Installed:
    """The process's provider (set by install(); None = OpenTelemetry's no-op tracer)."""

    provider: TracerProvider | None = None
    service: str = ""
    # Made once per install: get_tracer() builds a Tracer (and scope) on every call.
    tracer: trace.Tracer = trace.NoOpTracer()
    # What the RPC server span needs (see _ServerSpan): where finished spans go, and the
    # share of new traces recorded as a trace-id bound (TraceIdRatioBased's rule).
    processor: SpanProcessor | None = None
    scope = InstrumentationScope(_SCOPE_NAME)
    new_trace_bound: int = 0


def trace_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("SHOPMESH_TRACE_DIR"):
        return Path(env["SHOPMESH_TRACE_DIR"])
    state = env.get("SHOPMESH_STATE_DIR") or Path(__file__).resolve().parents[2] / ".stack"
    return Path(state) / "traces"


def trace_file(service: str, environ: Mapping[str, str] | None = None) -> Path:
    return trace_dir(environ) / f"{service}.jsonl"


class JsonLinesExporter(SpanExporter):
    """One JSON object per finished span, appended to a file (line-buffered, so a reader
    sees whole lines). Several processes of one service may append to the same file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: TextIO | None = path.open("a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode = _ENCODER.encode
        lines = "".join(encode(span_dict(s)) + "\n" for s in spans)
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            self._file.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_ENCODER = json.JSONEncoder(default=str)  # made once: json.dumps(default=...) makes one a call


def span_dict(span: ReadableSpan) -> dict[str, Any]:
    """The JSON object written per span (each property of a ReadableSpan read once)."""
    ctx = span.get_span_context()
    assert ctx is not None
    parent, status, attributes, links = span.parent, span.status, span.attributes, span.links
    start, end = span.start_time or 0, span.end_time or 0
    return {
        "service": span.resource.attributes.get("service.name", ""),
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent else "",
        "name": span.name,
        "kind": span.kind.name,
        "start_unix_nano": start,
        "duration_ms": round((end - start) / 1e6, 3),
        "status": status.status_code.name,
        "status_message": status.description or "",
        "attributes": dict(attributes) if attributes else {},
        "links": [
            {"trace_id": f"{ln.context.trace_id:032x}", "span_id": f"{ln.context.span_id:016x}"}
            for ln in links
        ]
        if links
        else [],
    }


def _exporter(service: str, environ: Mapping[str, str]) -> SpanExporter:
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        # The exporters read the endpoint, headers and TLS settings from the standard env.
        protocol = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        if protocol.startswith("http"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpExporter,
            )

            return HttpExporter()
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return JsonLinesExporter(trace_file(service, environ))


def sample_ratio(environ: Mapping[str, str]) -> float:
    """SHOPMESH_TRACE_SAMPLE: the share of new traces recorded (default 1.0 = every trace)."""
    raw = environ.get("SHOPMESH_TRACE_SAMPLE", "").strip() or "1"
    try:
        ratio = float(raw)
    except ValueError:
        raise ValueError(f"SHOPMESH_TRACE_SAMPLE={raw!r}: expected a number in 0..1") from None
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"SHOPMESH_TRACE_SAMPLE={raw!r}: expected a number in 0..1")
    return ratio


def sampler(environ: Mapping[str, str]) -> Sampler:
    """Parent-based ratio sampler from SHOPMESH_TRACE_SAMPLE (default 1.0 = every trace)."""
    ratio = sample_ratio(environ)
    return ParentBased(ALWAYS_ON if ratio >= 1.0 else TraceIdRatioBased(ratio))


def install(
    service: str,
    environ: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
) -> TracerProvider:
    """Install this process's provider (replacing an earlier one, which is flushed)."""
    env = os.environ if environ is None else environ
    shutdown()
    ratio = sample_ratio(env)
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}), sampler=sampler(env)
    )
    # Short export delay: the file is read by tests and the ops page seconds after a call.
    # Bounded queue: when the exporter falls behind, spans are dropped, never memory.
    processor = BatchSpanProcessor(
        exporter or _exporter(service, env),
        schedule_delay_millis=500,
        max_queue_size=int(env.get("SHOPMESH_TRACE_QUEUE", "") or 2048),
        max_export_batch_size=512,
    )
    provider.add_span_processor(processor)
    _Installed.provider = provider
    _Installed.service = service
    _Installed.tracer = provider.get_tracer(_SCOPE)
    _Installed.processor = processor
    _Installed.new_trace_bound = TraceIdRatioBased.get_bound_for_rate(ratio)
    return provider


def shutdown() -> None:
    """Flush and close the installed provider (at process exit)."""
    provider, _Installed.provider = _Installed.provider, None
    _Installed.tracer = trace.NoOpTracer()
    _Installed.processor = None
    if provider is not None:
        provider.shutdown()


def force_flush() -> None:
    if _Installed.provider is not None:
        _Installed.provider.force_flush()


def tracer() -> trace.Tracer:
    return _Installed.tracer


# ---------------------------------------------------------------- context


def current_span() -> Span:
    return trace.get_current_span()


def current_trace_id() -> str:
    """32 hex digits of the current span's trace, or "" outside any trace."""
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else ""


def current_span_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.span_id:016x}" if ctx.is_valid else ""


def inject(carrier: MutableMapping[str, str], span: Span | None = None) -> None:
    """Put `traceparent` (and `tracestate`) of `span` (default: the current one) in carrier."""
    ctx = trace.set_span_in_context(span) if span is not None else None
    _PROPAGATOR.inject(carrier, context=ctx)


def traceparent(span: Span | None = None) -> tuple[str, str]:
    """(traceparent, tracestate) of `span` or the current span; ("", "") outside a trace.
    The outbox stores this with each event so the relay continues the request's trace."""
    carrier: dict[str, str] = {}
    inject(carrier, span)
    return carrier.get(TRACEPARENT, ""), carrier.get(TRACESTATE, "")


def extract(carrier: Mapping[str, Any]) -> otel_context.Context:
    """The parent context carried by metadata or headers (str or bytes values)."""
    flat: dict[str, str] = {}
    for key in (TRACEPARENT, TRACESTATE):
        value = carrier.get(key)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if value:
            flat[key] = str(value)
    return _PROPAGATOR.extract(flat)


def _remote_parent(trace_id_hex: str) -> otel_context.Context | None:
    """A caller that sent only x-request-id (32 hex digits): keep its id as the trace id."""
    try:
        tid = int(trace_id_hex, 16)
    except ValueError:
        return None
    if len(trace_id_hex) != 32 or not tid:
        return None
    parent = trace.SpanContext(
        trace_id=tid,
        span_id=int.from_bytes(os.urandom(8), "big") or 1,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


# ---------------------------------------------------------------- server and client RPC


def rpc_attributes(method: str) -> dict[str, str]:
    """The span attributes of `/pkg.Service/Method` (computed once per method by callers)."""
    service, _, name = method.strip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


_EMPTY_CONTEXT = otel_context.Context()


def start_server_span(
    method: str,
    metadata: Mapping[str, Any],
    request_id: str = "",
    attributes: Mapping[str, str] | None = None,
) -> Span:
    """The SERVER span of one RPC, made current in the calling task (the call's own task,
    so nothing needs resetting). `request_id` (the caller's x-request-id) seeds the trace id
    when no traceparent came; without either the span starts a new trace.

    Sampled: a `_ServerSpan`. Not sampled: a NonRecordingSpan that only carries the ids (for
    logs and x-request-id) and costs nothing at the end. No provider: the invalid span."""
    if metadata.get(TRACEPARENT):
        parent = extract(metadata)
        if not trace.get_current_span(parent).get_span_context().is_valid and request_id:
            parent = _remote_parent(request_id) or parent
    elif request_id:
        parent = _remote_parent(request_id) or _EMPTY_CONTEXT
    else:
        parent = _EMPTY_CONTEXT
    provider = _Installed.provider
    if provider is None:
        span: Span = trace.INVALID_SPAN
    else:
        ids = provider.id_generator
        parent_ctx = trace.get_current_span(parent).get_span_context()
        if parent_ctx.is_valid:
            trace_id, trace_state = parent_ctx.trace_id, parent_ctx.trace_state
            sampled = parent_ctx.trace_flags.sampled  # parent-based: the caller decided
        else:
            trace_id, trace_state, parent_ctx = ids.generate_trace_id(), None, None
            sampled = (trace_id & _TRACE_ID_LIMIT) < _Installed.new_trace_bound
        context = trace.SpanContext(
            trace_id,
            ids.generate_span_id(),
            is_remote=False,
            trace_flags=_SAMPLED if sampled else _NOT_SAMPLED,
            trace_state=trace_state,
        )
        if sampled and _Installed.processor is not None:
            span = _ServerSpan(
                method.strip("/"),
                context,
                parent_ctx,
                attributes if attributes is not None else rpc_attributes(method),
                provider.resource,
                _Installed.processor,
            )
        else:
            span = trace.NonRecordingSpan(context)
    otel_context.attach(trace.set_span_in_context(span, parent))
    return span


_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_UNSET = Status(StatusCode.UNSET)


class _ServerSpan(Span):
    """A recording SERVER span that skips the SDK span's per-span machinery (attribute
    validation and locks, limits, a second copy at end()) and hands one ReadableSpan to the
    installed processor (batch -> exporter) when it ends: the same data the SDK would export,
    for about a third of the CPU (bench/results/runtime_hot_path.json). Attributes set here
    come from the runtime (strings), so there is nothing to validate."""

    __slots__ = ("_attrs", "_ctx", "_end", "_events", "_name", "_parent", "_proc", "_res",
                 "_start", "_status")  # fmt: skip

    def __init__(
        self,
        name: str,
        context: trace.SpanContext,
        parent: trace.SpanContext | None,
        attributes: Mapping[str, Any],
        resource: Resource,
        processor: SpanProcessor,
    ) -> None:
        self._name = name
        self._ctx = context
        self._parent = parent
        self._attrs = dict(attributes)
        self._res = resource
        self._proc = processor
        self._events: list[Event] = []
        self._status = _UNSET
        self._end = 0
        self._start = time.time_ns()

    def get_span_context(self) -> trace.SpanContext:
        return self._ctx

    def is_recording(self) -> bool:
        return not self._end

    def set_attribute(self, key: str, value: Any) -> None:
        if not self._end:
            self._attrs[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if not self._end:
            self._attrs.update(attributes)

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        if not self._end:
            self._events.append(Event(name, dict(attributes or {}), timestamp or time.time_ns()))

    def update_name(self, name: str) -> None:
        if not self._end:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end or self._status.status_code is StatusCode.OK:
            return  # as the SDK: OK is final
        self._status = status if isinstance(status, Status) else Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self.add_event(
            "exception",
            {
                "exception.type": type(exception).__qualname__,
                "exception.message": str(exception),
                "exception.stacktrace": "".join(traceback.format_exception(exception)),
                "exception.escaped": str(escaped),
                **(attributes or {}),
            },
            timestamp,
        )

    def end(self, end_time: int | None = None) -> None:
        if self._end:
            return
        self._end = end_time or time.time_ns()
        self._proc.on_end(
            ReadableSpan(
                self._name,
                self._ctx,
                self._parent,
                self._res,
                self._attrs,
                self._events,
                (),
                SpanKind.SERVER,
                None,
                self._status,
                self._start,
                self._end,
                _Installed.scope,
            )
        )


def end_rpc_span(span: Span, code: str) -> None:
    span.set_attribute("rpc.grpc.status_code", code)
    if code not in ("OK", "NOT_FOUND", "INVALID_ARGUMENT", "ALREADY_EXISTS"):
        span.set_status(Status(StatusCode.ERROR, code))
    span.end()


# The CLIENT span of the call in flight in this task (grpclib fires SendRequest and
# RecvTrailingMetadata in the task making the call; concurrent calls run in their own tasks).
_client_span: ContextVar[Span | None] = ContextVar("shopmesh_client_span", default=None)


def instrument_channel(channel: Any) -> Any:
    """Trace every call on a grpclib client Channel and send `traceparent`; returns it."""
    from grpclib.events import RecvTrailingMetadata, SendRequest, listen

    async def on_send(event: SendRequest) -> None:
        service, _, name = event.method_name.strip("/").partition("/")
        span = tracer().start_span(
            event.method_name.strip("/"),
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        carrier: dict[str, str] = {}
        inject(carrier, span)
        for key, value in carrier.items():
            event.metadata[key] = value
        _client_span.set(span)

    async def on_trailers(event: RecvTrailingMetadata) -> None:
        span = _client_span.get()
        if span is not None:
            _client_span.set(None)
            end_rpc_span(span, event.status.name)

    listen(channel, SendRequest, on_send)
    listen(channel, RecvTrailingMetadata, on_trailers)
    return channel


# ---------------------------------------------------------------- database


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
