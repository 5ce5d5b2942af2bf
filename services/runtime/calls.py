"""The per-call wrapper: every application RPC a runtime server serves goes through `_Call`,
which in order: binds the request context (trace id, caller LSN), refuses new calls while
draining (UNAVAILABLE), applies the schema timeout, runs the auth hook with the method's
schema policy, validates every received message against its buf.validate rules, calls the
handler, maps errors (errors.py), records the RED metrics, the server span and one JSON log
line, and sends the trailers: the status plus `x-request-id` and, after a write,
`x-shop-lsn`.

Per call it builds only what the call needs: metric children, span attributes and the
policy are looked up once per method (`_Call.__init__`). Imports grpclib, not the App.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import h2.exceptions
from google.protobuf.message import DecodeError
from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError

from services.runtime import context, tracing
from services.runtime.errors import InvalidArgument, to_grpc_error
from services.runtime.policy import CallInfo, method_policy
from services.runtime.validation import validate

log = logging.getLogger("services.runtime.server")


class _ValidatingStream:
    """The handler's view of the stream: every received message is validated first."""

    __slots__ = ("_stream", "send_message")

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.send_message = stream.send_message  # every handler sends: skip __getattr__

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def recv_message(self) -> Any:
        try:
            message = await self._stream.recv_message()
        except DecodeError:
            # Bytes that are not a message of the request type (or nest deeper than the
            # parser allows) are the client's fault, not an internal error.
            raise InvalidArgument("request", "body is not a valid request message") from None
        if message is not None:
            validate(message)
        return message

    def __aiter__(self) -> _ValidatingStream:
        return self

    async def __anext__(self) -> Any:
        message = await self.recv_message()
        if message is None:
            raise StopAsyncIteration
        return message


def _new_id() -> str:
    return os.urandom(16).hex()  # a trace id without a tracer; uuid4() costs more


def _trace_id(metadata: Any) -> str:
    rid = metadata.get(context.TRACE_HEADER)
    if rid:
        return str(rid)[:64]
    tp = metadata.get("traceparent")  # W3C: version-traceid-spanid-flags
    if tp and len(parts := str(tp).split("-")) == 4:
        return parts[1]
    return ""  # the server span starts a new trace (or, untraced, a random id)


class _Call:
    def __init__(self, app: Any, path: str, handler: Handler) -> None:
        self.app = app
        self.path = path
        self.func = handler.func
        self.policy = method_policy(path)
        self.span_attributes = tracing.rpc_attributes(path)
        # Labelled metric children made once per method (labels() locks and hashes per call).
        self.duration = app.metrics.rpc_duration.labels(path)
        self.requests: dict[str, Any] = {}

    async def __call__(self, stream: Any) -> None:
        app = self.app
        md = stream.metadata or {}
        ctx = context.RequestContext(method=self.path, trace_id=_trace_id(md))
        raw_lsn = md.get(context.LSN_HEADER)
        if raw_lsn:
            with contextlib.suppress(ValueError):
                ctx.min_lsn = context.parse_lsn(str(raw_lsn))
        context.bind(ctx)  # this task serves only this call: no reset needed
        span = tracing.start_server_span(self.path, md, ctx.trace_id, self.span_attributes)
        sc = span.get_span_context()
        # logs, errors and x-request-id name the trace (sampled or not)
        ctx.trace_id = f"{sc.trace_id:032x}" if sc.is_valid else ctx.trace_id or _new_id()
        start = time.perf_counter()
        code = "OK"
        app.in_flight += 1
        app._idle.clear()
        deadline: asyncio.Timeout | None = None
        failure: GRPCError | None = None
        try:
            if app.draining:
                raise GRPCError(Status.UNAVAILABLE, "server is shutting down")
            async with asyncio.timeout(self.policy.timeout_s) as deadline:
                if app.auth is not None:
                    ctx.principal = await app.auth(
                        CallInfo(self.policy, md, str(stream.peer.addr()))
                    )
                await self.func(_ValidatingStream(stream))
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                # the schema's timeout_ms for this method
                failure = GRPCError(
                    Status.DEADLINE_EXCEEDED, f"timed out after {self.policy.timeout_s}s"
                )
            else:
                failure, expected = to_grpc_error(exc, ctx.trace_id)  # type: ignore[assignment]
                if not expected:
                    log.error("unexpected error", exc_info=exc)
            code = failure.status.name  # type: ignore[union-attr]
        finally:
            elapsed = time.perf_counter() - start
            app.in_flight -= 1
            if not app.in_flight:
                app._idle.set()
            counter = self.requests.get(code)
            if counter is None:
                counter = self.requests[code] = app.metrics.rpc_requests.labels(self.path, code)
            counter.inc()
            self.duration.observe(elapsed)
            tracing.end_rpc_span(span, code)
            if app.access_log is not None:
                app.access_log.write(
                    self.path,
                    code,
                    elapsed,
                    ctx.trace_id,
                    f"{sc.span_id:016x}" if sc.is_valid else "",
                )
        await _send_trailers(stream, ctx, failure)


async def _send_trailers(
    stream: Any, ctx: context.RequestContext, failure: GRPCError | None
) -> None:
    """The call's trailers: its status plus `x-request-id` and, after a write, `x-shop-lsn`.
    Sent here rather than by a SendTrailingMetadata listener, whose presence makes grpclib
    build an event object for every reply; an error is answered here, not raised, so grpclib
    neither logs it again nor converts it."""
    if getattr(stream, "_send_trailing_metadata_done", False):
        return  # the handler sent its own (a streaming method may)
    trailers = [(context.TRACE_HEADER, ctx.trace_id)]
    if ctx.written_lsn:
        trailers.append((context.LSN_HEADER, context.format_lsn(ctx.written_lsn)))
    try:
        if failure is None:
            await stream.send_trailing_metadata(metadata=trailers)
        else:
            await stream.send_trailing_metadata(
                status=failure.status,
                status_message=failure.message,
                status_details=failure.details,
                metadata=trailers,
            )
    except h2.exceptions.StreamClosedError:
        pass  # the client reset the stream meanwhile: nobody to tell (grpclib does the same)


class _Wrapped:
    """A servable whose every method goes through `_Call` (grpclib serves `__mapping__`)."""

    def __init__(self, servable: Any, app: Any) -> None:
        self._mapping = {
            path: Handler(_Call(app, path, h), h.cardinality, h.request_type, h.reply_type)
            for path, h in servable.__mapping__().items()
        }

    def __mapping__(self) -> dict[str, Handler]:
        return self._mapping
