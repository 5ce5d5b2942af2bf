"""The per-call request context (a contextvar set by the server's call wrapper).

Carries the trace id for logs and errors, the principal from the auth hook, and the LSN
bookkeeping behind read-your-writes: `min_lsn` is what the caller has seen (metadata
`x-shop-lsn`), `written_lsn` is the newest commit of this call, returned in the trailer
`x-shop-lsn` so a client can echo it on its next call. Imports only the stdlib.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

LSN_HEADER = "x-shop-lsn"
TRACE_HEADER = "x-request-id"


def parse_lsn(text: str) -> int:
    """PostgreSQL LSN 'X/Y' (hex halves) to an int; ValueError when malformed."""
    hi, lo = text.strip().split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass
class RequestContext:
    method: str = ""
    trace_id: str = ""
    principal: object | None = None
    min_lsn: int = 0  # from the caller; reads must see at least this
    written_lsn: int = 0  # newest commit made by this call
    extra: dict[str, object] = field(default_factory=dict)

    def saw_lsn(self, lsn: int) -> None:
        self.written_lsn = max(self.written_lsn, lsn)


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "shopmesh_request", default=None
)


def current() -> RequestContext | None:
    """The context of the call being served, or None outside a call (tasks, tests)."""
    return _current.get()


def bind(ctx: RequestContext) -> contextvars.Token[RequestContext | None]:
    return _current.set(ctx)
