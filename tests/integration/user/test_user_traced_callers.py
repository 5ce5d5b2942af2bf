"""Callers of the user service trace their calls: auth's CheckCredentials client (GrpcUsers)
sends a CLIENT span's traceparent and the user server's span continues that trace."""

from __future__ import annotations

import uuid

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.auth.clients import GrpcUsers
from services.runtime import tracing
from services.runtime.auth import ServiceIdentity
from shop.user.v1 import user_pb2 as pb

CHECK_CREDENTIALS = "shop.user.v1.UserService/CheckCredentials"
PASSWORD = "correct horse battery"


async def test_auth_check_credentials_call_is_one_trace_with_the_user_server(user_app, user_stub):
    email = f"trace-{uuid.uuid4().hex[:10]}@example.com"
    await user_stub.RegisterUser(
        pb.RegisterUserRequest(email=email, password=PASSWORD, display_name="Ada")
    )
    exporter = InMemorySpanExporter()
    tracing.install("auth-client-test", exporter=exporter)
    users = GrpcUsers(f"127.0.0.1:{user_app.grpc_port}", ServiceIdentity.from_env("auth"))
    try:
        with tracing.tracer().start_as_current_span("test: login") as root:
            identity = await users.check_credentials(email, PASSWORD)
        tracing.force_flush()
        spans = exporter.get_finished_spans()
    finally:
        await users.close()
        tracing.shutdown()
    assert identity is not None

    trace_id = root.get_span_context().trace_id
    client = [s for s in spans if s.kind == SpanKind.CLIENT and s.name == CHECK_CREDENTIALS]
    assert len(client) == 1, [s.name for s in spans]
    assert client[0].context.trace_id == trace_id
    assert client[0].parent is not None
    assert client[0].parent.span_id == root.get_span_context().span_id
    server = [s for s in spans if s.kind == SpanKind.SERVER and s.name == CHECK_CREDENTIALS]
    assert len(server) == 1
    assert server[0].context.trace_id == trace_id
    assert server[0].parent is not None
    assert server[0].parent.span_id == client[0].context.span_id
