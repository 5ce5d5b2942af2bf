"""The current span and trace ids, and W3C trace context in and out of carriers (gRPC
metadata, Kafka headers).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span

from services.runtime.tracing.provider import (
    _PROPAGATOR,
    TRACEPARENT,
    TRACESTATE,
)


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
