"""RPC spans: the SERVER span of each call the runtime serves (a lean span of its own, see
_ServerSpan) and the CLIENT span of each outgoing call on an instrumented channel.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from services.runtime.tracing.context import _remote_parent, extract, inject
from services.runtime.tracing.provider import (
    _TRACE_ID_LIMIT,
    TRACEPARENT,
    _Installed,
    tracer,
)


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
