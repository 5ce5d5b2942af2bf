"""The process's tracer provider: installed once by `install()` (serve() does it), its
sampler (SHOPMESH_TRACE_SAMPLE) and its exporter (OTLP, or JSON lines per service under the
trace dir); until then every helper works on OpenTelemetry's no-op tracer.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
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


# services/runtime/tracing/provider.py -> the repository root.
REPO_ROOT = Path(__file__).resolve().parents[3]


def trace_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("SHOPMESH_TRACE_DIR"):
        return Path(env["SHOPMESH_TRACE_DIR"])
    state = env.get("SHOPMESH_STATE_DIR") or REPO_ROOT / ".stack"
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
