"""The RPC server span (tracing.start_server_span / end_rpc_span): what it exports when the
trace is sampled, and that an unsampled call still carries its ids but exports nothing."""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from services.runtime import tracing

METHOD = "/shop.product.v1.ProductService/GetProduct"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def _serve_one(environ: dict[str, str], metadata: dict[str, str], code: str = "OK") -> tuple:
    exporter = InMemorySpanExporter()
    tracing.install("svc", environ=environ, exporter=exporter)
    token = otel_context.attach(otel_context.Context())
    try:
        span = tracing.start_server_span(METHOD, metadata, "", tracing.rpc_attributes(METHOD))
        ctx = span.get_span_context()
        current = tracing.current_trace_id()
        tracing.end_rpc_span(span, code)
    finally:
        otel_context.detach(token)
        tracing.shutdown()  # flushes the batch processor into the exporter
    return ctx, current, exporter.get_finished_spans()


def test_sampled_call_exports_one_server_span_child_of_the_caller() -> None:
    tp = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    ctx, current, (span,) = _serve_one({}, {"traceparent": tp}, "INTERNAL")
    assert current == CALLER_TRACE == f"{ctx.trace_id:032x}"
    assert span.name == METHOD.strip("/") and span.kind is SpanKind.SERVER
    assert f"{span.parent.span_id:016x}" == CALLER_SPAN
    assert span.context.span_id == ctx.span_id != int(CALLER_SPAN, 16)
    assert span.attributes["rpc.method"] == "GetProduct"
    assert span.attributes["rpc.grpc.status_code"] == "INTERNAL"
    assert span.status.status_code is StatusCode.ERROR
    assert span.resource.attributes["service.name"] == "svc"
    assert span.end_time >= span.start_time > 0
    assert tracing.span_dict(span)["parent_span_id"] == CALLER_SPAN


def test_new_trace_is_sampled_by_ratio_and_an_expected_error_is_not_an_error() -> None:
    ctx, _, (span,) = _serve_one({"SHOPMESH_TRACE_SAMPLE": "1"}, {}, "NOT_FOUND")
    assert span.parent is None and ctx.trace_flags.sampled
    assert span.status.status_code is StatusCode.UNSET


def test_unsampled_call_keeps_its_ids_and_exports_nothing() -> None:
    # the caller decided not to sample: parent-based, whatever the local ratio
    tp = f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"
    ctx, current, spans = _serve_one({}, {"traceparent": tp})
    assert spans == () or list(spans) == []
    assert current == CALLER_TRACE and ctx.is_valid and not ctx.trace_flags.sampled
    # a new trace with ratio 0: an id for the logs, no span
    ctx, current, spans = _serve_one({"SHOPMESH_TRACE_SAMPLE": "0"}, {})
    assert list(spans) == [] and ctx.is_valid and current == f"{ctx.trace_id:032x}"
