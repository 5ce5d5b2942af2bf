"""Handler and client helpers around grpclib streams.

`@unary` turns `async def GetProduct(self, request) -> GetProductResponse` into the stream
signature grpclib's generated `<Service>Base` expects, so handlers map request -> command ->
response and nothing else (validation, errors, metrics are the server's job).

Clients propagate the trace id and, for read-your-writes, the last LSN they saw:

    reply = await stub.GetProduct(req, metadata=call_metadata(lsn=last_lsn))
    # or with stream API: trailers[LSN_HEADER] holds the newest commit LSN of the call
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from services.runtime import context, tracing

Req = TypeVar("Req")
Rep = TypeVar("Rep")


def unary(
    fn: Callable[[Any, Req], Awaitable[Rep]],
) -> Callable[[Any, Any], Awaitable[None]]:
    @functools.wraps(fn)
    async def handler(self: Any, stream: Any) -> None:
        request = await stream.recv_message()
        await stream.send_message(await fn(self, request))

    return handler


def call_metadata(lsn: str | None = None, trace_id: str | None = None) -> dict[str, str]:
    """Outgoing metadata: the current call's trace id (so logs join up) and an LSN."""
    md: dict[str, str] = {}
    ctx = context.current()
    tid = trace_id or (ctx.trace_id if ctx else None)
    if tid:
        md[context.TRACE_HEADER] = tid
    if lsn:
        md[context.LSN_HEADER] = lsn
    tracing.inject(md)  # traceparent of the current span (a channel's client span replaces it)
    return md
