"""gRPC adapters (generated grpclib stubs) for the user directory and the order book.

Maps gRPC status to the domain's split: NOT_FOUND / INVALID_ARGUMENT are permanent (the
event names someone or something that does not exist), everything else is transient.

A poll of records is resolved through `Lookups`: answers are kept for a short while (an
order's emails, or a shopper's orders, follow each other within seconds), concurrent
requests for one id share one call, and at most `max_concurrent` calls are in flight.
Failures are not kept. Users are read in batches (BatchGetUsers): the ids asked for in one
loop turn (a poll's records reach their lookup together, after the poll's one claim
statement) go out as one call; GetOrder takes one id.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Hashable, Mapping
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
# GetUserRequest.id's rule (user.proto): an id outside it is answered here, so one bad id
# never makes a whole BatchGetUsers call INVALID_ARGUMENT.
_USER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
BATCH_MAX = 500  # BatchGetUsersRequest.ids max_items

KeyT = TypeVar("KeyT", bound=Hashable)
ValueT = TypeVar("ValueT")


def _settle(future: asyncio.Future | None, answer: object) -> None:
    if future is None or future.done():
        return
    if isinstance(answer, asyncio.CancelledError):
        future.cancel()
    elif isinstance(answer, BaseException):
        future.set_exception(answer)
        future.exception()  # retrieved: every asker may have gone meanwhile
    else:
        future.set_result(answer)


class Lookups(Generic[KeyT, ValueT]):
    """A short-lived cache in front of `fetch` (or `fetch_many`), one call per id in flight."""

    def __init__(
        self,
        fetch: Callable[[KeyT], Awaitable[ValueT]],
        ttl_s: float,
        max_size: int = 10_000,
        max_concurrent: int = 32,
        fetch_many: Callable[[list[KeyT]], Awaitable[Mapping[KeyT, ValueT | Exception]]]
        | None = None,
        max_batch: int = 500,
    ) -> None:
        """`fetch_many`, when given, answers many keys in one call (each key a value or
        the exception its asker gets); `fetch` is then unused by `get`."""
        self._fetch = fetch
        self._fetch_many = fetch_many
        self._max_batch = max_batch
        self._pending: list[KeyT] = []
        self._flusher: asyncio.Future[None] | None = None
        self._cache: TTLCache[KeyT, ValueT] | None = (
            TTLCache(max_size, ttl_s) if ttl_s > 0 else None
        )
        self._in_flight: dict[KeyT, asyncio.Future[ValueT]] = {}
        self._slots = asyncio.Semaphore(max_concurrent)
        self.calls = 0  # calls made to the service (a batch is one)
        self.keys_fetched = 0  # ids those calls asked for (cache misses)

    async def get(self, key: KeyT) -> ValueT:
        if self._cache is not None:
            value = self._cache.get(key)
            if value is not None:
                return value
        call = self._in_flight.get(key)
        if call is None:
            if self._fetch_many is not None:
                call = asyncio.get_running_loop().create_future()
                self._pending.append(key)
                if self._flusher is None:
                    # A task in the first asker's context: the batch's client span (and
                    # traceparent) belong to the record that asked first.
                    self._flusher = asyncio.ensure_future(self._flush())
                    self._flusher.add_done_callback(self._flush_done)
            else:
                call = asyncio.ensure_future(self._call(key))
            self._in_flight[key] = call
            call.add_done_callback(lambda _: self._in_flight.pop(key, None))
        # shield: one asker cancelled must not cancel the call the others wait for.
        return await asyncio.shield(call)

    async def _flush(self) -> None:
        # One more loop turn: the askers woken together with the first one join its batch.
        await asyncio.sleep(0)
        keys, self._pending, self._flusher = self._pending, [], None
        size = self._max_batch
        await asyncio.gather(
            *(self._call_many(keys[i : i + size]) for i in range(0, len(keys), size))
        )

    def _flush_done(self, flusher: asyncio.Future[None]) -> None:
        """A flush cancelled before it took its keys (even before it started): their
        askers are cancelled too instead of waiting for an answer that never comes."""
        if not flusher.cancelled() or self._flusher is not flusher:
            return
        keys, self._pending, self._flusher = self._pending, [], None
        for key in keys:
            _settle(self._in_flight.get(key), asyncio.CancelledError())

    async def _call_many(self, keys: list[KeyT]) -> None:
        assert self._fetch_many is not None
        try:
            async with self._slots:
                self.calls += 1
                self.keys_fetched += len(keys)
                answers = await self._fetch_many(keys)
        except BaseException as exc:
            for key in keys:
                _settle(self._in_flight.get(key), exc)
            if not isinstance(exc, Exception):
                raise
            return
        for key in keys:
            answer = answers.get(key)
            if answer is None:
                answer = LookupError(f"{key!r}: no answer in the batch")
            elif not isinstance(answer, BaseException) and self._cache is not None:
                self._cache[key] = answer
            _settle(self._in_flight.get(key), answer)

    async def _call(self, key: KeyT) -> ValueT:
        async with self._slots:
            self.calls += 1
            self.keys_fetched += 1
            value = await self._fetch(key)
        if self._cache is not None:
            self._cache[key] = value
        return value


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


class GrpcUserDirectory:
    """Recipients by user id: BatchGetUsers for all the ids asked in one loop turn (`batch`),
    or one GetUser each."""

    def __init__(
        self,
        address: str,
        timeout: float = 3.0,
        cache_s: float = 0.0,
        max_concurrent: int = 32,
        batch: bool = True,
    ) -> None:
        self._channel = authenticate_channel(instrument_channel(Channel(*_host_port(address))))
        self._stub = user_grpc.UserServiceStub(self._channel)
        self._timeout = timeout
        self._max_concurrent = max_concurrent
        self.lookups = Lookups(
            self._get_user,
            cache_s,
            max_concurrent=max_concurrent,
            fetch_many=self._get_users if batch else None,
            max_batch=BATCH_MAX,
        )

    async def get_user(self, user_id: str) -> Recipient:
        return await self.lookups.get(user_id)

    async def _get_users(self, user_ids: list[str]) -> dict[str, Recipient | Exception]:
        out: dict[str, Recipient | Exception] = {}
        valid = []
        for user_id in user_ids:
            if _USER_ID.fullmatch(user_id):
                valid.append(user_id)
            else:
                out[user_id] = UnknownRecipientError(f"user {user_id!r}: INVALID_ARGUMENT")
        if not valid:
            return out
        try:
            reply = await self._stub.BatchGetUsers(
                user_pb2.BatchGetUsersRequest(ids=valid), timeout=self._timeout
            )
        except GRPCError as exc:
            if exc.status not in (Status.UNIMPLEMENTED, Status.INVALID_ARGUMENT):
                raise DependencyUnavailableError(f"user service: {exc.status.name}") from None
            # A user service without the batch (an older one mid-rollout), or a rule that
            # differs from ours: one GetUser per id, which answers each id on its own.
            return out | await self._one_by_one(valid)
        except (OSError, TimeoutError) as exc:
            raise DependencyUnavailableError(f"user service: {type(exc).__name__}") from None
        for u in reply.users:
            out[u.id] = Recipient(u.id, u.email, u.display_name)
        for user_id in reply.missing_ids:
            out[user_id] = UnknownRecipientError(f"user {user_id!r}: NOT_FOUND")
        return out

    async def _one_by_one(self, user_ids: list[str]) -> dict[str, Recipient | Exception]:
        out: dict[str, Recipient | Exception] = {}
        step = self._max_concurrent
        for i in range(0, len(user_ids), step):
            chunk = user_ids[i : i + step]
            answers = await asyncio.gather(
                *(self._get_user(u) for u in chunk), return_exceptions=True
            )
            for user_id, answer in zip(chunk, answers, strict=True):
                if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                    raise answer
                out[user_id] = answer
        return out

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
