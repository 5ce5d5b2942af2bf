"""Spans leave by OTLP when a collector is configured (OTEL_EXPORTER_OTLP_ENDPOINT), over
gRPC (the default) or HTTP/protobuf: a local stand-in collector receives the real export
requests and decodes them."""

from __future__ import annotations

import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, HTTPServer

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from services.runtime import tracing


def _names(requests: list[trace_service_pb2.ExportTraceServiceRequest]) -> dict[str, str]:
    """span name -> service.name of its resource, over every received request."""
    out = {}
    for req in requests:
        for rs in req.resource_spans:
            attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    out[span.name] = attrs.get("service.name", "")
    return out


def _emit(service: str) -> str:
    tracing.install(service)
    try:
        with tracing.tracer().start_as_current_span("otlp-check") as span:
            trace_id = f"{span.get_span_context().trace_id:032x}"
        tracing.force_flush()
        return trace_id
    finally:
        tracing.shutdown()


def test_http_protobuf_export_reaches_the_collector(monkeypatch, tmp_path) -> None:
    received: list[trace_service_pb2.ExportTraceServiceRequest] = []
    paths: list[str] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            paths.append(self.path)
            received.append(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("SHOPMESH_TRACE_DIR", str(tmp_path))
    try:
        _emit("otlp-http-svc")
    finally:
        server.shutdown()
    assert paths and set(paths) == {"/v1/traces"}
    assert _names(received) == {"otlp-check": "otlp-http-svc"}
    assert not list(tmp_path.iterdir()), "with a collector, no span file is written"


def test_grpc_export_reaches_the_collector(monkeypatch, tmp_path) -> None:
    received: list[trace_service_pb2.ExportTraceServiceRequest] = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.setenv("SHOPMESH_TRACE_DIR", str(tmp_path))
    try:
        _emit("otlp-grpc-svc")
    finally:
        server.stop(None)
    assert _names(received) == {"otlp-check": "otlp-grpc-svc"}
    assert not list(tmp_path.iterdir())


@pytest.fixture(autouse=True)
def _no_provider_left():
    yield
    tracing.shutdown()
