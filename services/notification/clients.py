"""gRPC adapters (generated grpclib stubs) for the user directory and the order book.

Maps gRPC status to the domain's split: NOT_FOUND / INVALID_ARGUMENT are permanent (the
event names someone or something that does not exist), everything else is transient.

Neither service has a batch read (GetUser and GetOrder take one id), so a poll of records
is resolved through `Lookups`: answers are kept for a short while (an order's emails, or a
shopper's orders, follow each other within seconds), concurrent requests for one id share
one call, and at most `max_concurrent` calls are in flight. Failures are not kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache
from grpclib import GRPCError, Status
from grpclib.client import Channel

from services.notification.domain import (
    DependencyUnavailableError,
    Money,
    OrderLine,
    OrderSummary,
    Recipient,
    UnknownOrderError,
    UnknownRecipientError,
)
from services.runtime.auth import authenticate_channel
from services.runtime.tracing import instrument_channel
from shop.order.v1 import order_grpc, order_pb2
from shop.user.v1 import user_grpc, user_pb2

_PERMANENT = (Status.NOT_FOUND, Status.INVALID_ARGUMENT)

KeyT = TypeVar("KeyT", bound=Hashable)
ValueT = TypeVar("ValueT")


class Lookups(Generic[KeyT, ValueT]):
    """A short-lived cache in front of `fetch`, with one call per id in flight."""

    def __init__(
        self,
        fetch: Callable[[KeyT], Awaitable[ValueT]],
        ttl_s: float,
        max_size: int = 10_000,
        max_concurrent: int = 32,
    ) -> None:
        self._fetch = fetch
        self._cache: TTLCache[KeyT, ValueT] | None = (
            TTLCache(max_size, ttl_s) if ttl_s > 0 else None
        )
        self._in_flight: dict[KeyT, asyncio.Future[ValueT]] = {}
        self._slots = asyncio.Semaphore(max_concurrent)
        self.calls = 0  # fetches made (cache misses that reached the service)

    async def get(self, key: KeyT) -> ValueT:
        if self._cache is not None:
            value = self._cache.get(key)
            if value is not None:
                return value
        call = self._in_flight.get(key)
        if call is None:
            # A task in the first asker's context: its client span (and traceparent) belong
            # to the record that needed the answer first.
            call = asyncio.ensure_future(self._call(key))
            self._in_flight[key] = call
            call.add_done_callback(lambda _: self._in_flight.pop(key, None))
        # shield: one asker cancelled must not cancel the call the others wait for.
        return await asyncio.shield(call)

    async def _call(self, key: KeyT) -> ValueT:
        async with self._slots:
            self.calls += 1
            value = await self._fetch(key)
        if self._cache is not None:
            self._cache[key] = value
        return value


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


class GrpcUserDirectory:
    def __init__(
        self, address: str, timeout: float = 3.0, cache_s: float = 0.0, max_concurrent: int = 32
    ) -> None:
        self._channel = authenticate_channel(instrument_channel(Channel(*_host_port(address))))
        self._stub = user_grpc.UserServiceStub(self._channel)
        self._timeout = timeout
        self.lookups = Lookups(self._get_user, cache_s, max_concurrent=max_concurrent)

    async def get_user(self, user_id: str) -> Recipient:
        return await self.lookups.get(user_id)

    async def _get_user(self, user_id: str) -> Recipient:
        try:
            reply = await self._stub.GetUser(
                user_pb2.GetUserRequest(id=user_id), timeout=self._timeout
            )
        except GRPCError as exc:
            if exc.status in _PERMANENT:
                raise UnknownRecipientError(f"user {user_id!r}: {exc.status.name}") from None
            raise DependencyUnavailableError(f"user service: {exc.status.name}") from None
        except (OSError, TimeoutError) as exc:
            raise DependencyUnavailableError(f"user service: {type(exc).__name__}") from None
        return Recipient(reply.user.id, reply.user.email, reply.user.display_name)

    def close(self) -> None:
        self._channel.close()


def _money(m: object) -> Money:
    return Money(m.currency_code, m.units, m.nanos)  # type: ignore[attr-defined]


class GrpcOrderBook:
    def __init__(
        self, address: str, timeout: float = 3.0, cache_s: float = 0.0, max_concurrent: int = 32
    ) -> None:
        self._channel = authenticate_channel(instrument_channel(Channel(*_host_port(address))))
        self._stub = order_grpc.OrderServiceStub(self._channel)
        self._timeout = timeout
        self.lookups = Lookups(self._get_order, cache_s, max_concurrent=max_concurrent)

    async def get_order(self, order_id: str) -> OrderSummary:
        return await self.lookups.get(order_id)

    async def _get_order(self, order_id: str) -> OrderSummary:
        try:
            reply = await self._stub.GetOrder(
                order_pb2.GetOrderRequest(id=order_id), timeout=self._timeout
            )
        except GRPCError as exc:
            if exc.status in _PERMANENT:
                raise UnknownOrderError(f"order {order_id!r}: {exc.status.name}") from None
            raise DependencyUnavailableError(f"order service: {exc.status.name}") from None
        except (OSError, TimeoutError) as exc:
            raise DependencyUnavailableError(f"order service: {type(exc).__name__}") from None
        order = reply.order
        # In the shopper's currency when the order has one (converted_*).
        lines = tuple(
            OrderLine(
                ln.product_name,
                ln.quantity,
                _money(
                    ln.converted_unit_price
                    if ln.HasField("converted_unit_price")
                    else ln.unit_price
                ),
            )
            for ln in order.lines
        )
        total = order.converted_total if order.HasField("converted_total") else order.total
        shipping = _money(order.shipping_cost) if order.HasField("shipping_cost") else None
        return OrderSummary(order.id, _money(total), lines, shipping)

    def close(self) -> None:
        self._channel.close()
