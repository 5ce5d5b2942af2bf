"""What every command of the order store shares: a CLIENT span in the caller's trace and the
store being down reported as UNAVAILABLE (`_store_call`), the busy-order error, and the
outcome of a write handed to the relay of this process (Written).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from pymongo.errors import ConnectionFailure

from services.order.errors import OrderStoreUnavailableError
from services.runtime import tracing
from services.runtime.errors import Unavailable


class OrderLockTimeout(Unavailable):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} is busy, retry")


@dataclass(frozen=True)
class Written:
    """A claim this process wrote, for the relay: `landed` True (its update matched), None
    (unknown: the update failed midway), False (it did not match: drop the claim)."""

    claim: dict[str, Any]
    landed: bool | None


def _unreachable(exc: ConnectionFailure) -> OrderStoreUnavailableError:
    return OrderStoreUnavailableError(f"order store unreachable: {type(exc).__name__}")


P = ParamSpec("P")
T = TypeVar("T")


def _store_call(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """One store operation: a CLIENT span `db.<operation>` in the caller's trace (motor runs
    pymongo on executor threads, where a command listener would lose the trace context), and
    the store being down (refused, timed out, no server selected) is UNAVAILABLE to callers,
    not an unexpected error: pymongo's ConnectionFailure -> a domain error. Outside a trace
    (the sweeper's idle polls every few seconds) no span: each would be a trace of its own."""
    attributes = {"db.system": "mongodb", "db.operation": fn.__name__}

    async def unreachable_is_unavailable(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except ConnectionFailure as exc:
            raise _unreachable(exc) from exc

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        if not tracing.current_trace_id():
            return await unreachable_is_unavailable(*args, **kwargs)
        with tracing.db_span(f"db.{fn.__name__}", "ferretdb", **attributes):
            return await unreachable_is_unavailable(*args, **kwargs)

    return call
