"""The runtime's own gRPC client (the JWKS fetch every service makes to verify user tokens)
is traced: its CLIENT span is the child of the span that needed the keys."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from mesh.services import SERVICES
from services.runtime import tracing
from services.runtime.auth import grpc_jwks_fetcher

pytestmark = pytest.mark.stack


async def test_jwks_fetch_is_a_client_span_of_the_caller(stack):
    stack.require("auth")
    exporter = InMemorySpanExporter()
    tracing.install("jwks-client-test", exporter=exporter)
    fetch = grpc_jwks_fetcher("127.0.0.1", SERVICES["auth"])
    try:
        with tracing.tracer().start_as_current_span("test: verify a token") as root:
            jwks = await fetch()
        tracing.force_flush()
        spans = exporter.get_finished_spans()
    finally:
        fetch.close()
        tracing.shutdown()
    assert jwks["keys"], "the auth service publishes at least one key"
    client = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert [s.name for s in client] == ["shop.auth.v1.AuthService/GetJwks"]
    assert client[0].context.trace_id == root.get_span_context().trace_id
    assert client[0].parent is not None
    assert client[0].parent.span_id == root.get_span_context().span_id
    assert client[0].attributes["rpc.grpc.status_code"] == "OK"
