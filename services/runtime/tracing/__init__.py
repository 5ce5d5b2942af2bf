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

Modules: provider.py (install, sampling, export), context.py (ids, propagation), rpc.py
(server and client spans), stores.py (database and Kafka spans).
"""

from opentelemetry.trace import Status, StatusCode

from services.runtime.tracing.context import (
    current_span,
    current_span_id,
    current_trace_id,
    extract,
    inject,
    traceparent,
)
from services.runtime.tracing.provider import (
    TRACEPARENT,
    TRACESTATE,
    JsonLinesExporter,
    force_flush,
    install,
    sample_ratio,
    sampler,
    shutdown,
    span_dict,
    trace_dir,
    trace_file,
    tracer,
)
from services.runtime.tracing.rpc import (
    end_rpc_span,
    instrument_channel,
    rpc_attributes,
    start_server_span,
)
from services.runtime.tracing.stores import (
    consume_span,
    db_span,
    instrument_engine,
    start_producer_span,
)

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "JsonLinesExporter",
    "Status",
    "StatusCode",
    "consume_span",
    "current_span",
    "current_span_id",
    "current_trace_id",
    "db_span",
    "end_rpc_span",
    "extract",
    "force_flush",
    "inject",
    "install",
    "instrument_channel",
    "instrument_engine",
    "rpc_attributes",
    "sample_ratio",
    "sampler",
    "shutdown",
    "span_dict",
    "start_producer_span",
    "start_server_span",
    "trace_dir",
    "trace_file",
    "traceparent",
    "tracer",
]
