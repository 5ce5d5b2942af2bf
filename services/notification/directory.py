"""gRPC adapters (generated grpclib stubs) for the user directory and the order book.

Maps gRPC status to the domain's split: NOT_FOUND / INVALID_ARGUMENT are permanent (the
event names someone or something that does not exist), everything else is transient.
"""

from __future__ import annotations

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


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


class GrpcUserDirectory:
    def __init__(self, address: str, timeout: float = 3.0) -> None:
        self._channel = authenticate_channel(instrument_channel(Channel(*_host_port(address))))
        self._stub = user_grpc.UserServiceStub(self._channel)
        self._timeout = timeout

    async def get_user(self, user_id: str) -> Recipient:
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
    def __init__(self, address: str, timeout: float = 3.0) -> None:
        self._channel = authenticate_channel(instrument_channel(Channel(*_host_port(address))))
        self._stub = order_grpc.OrderServiceStub(self._channel)
        self._timeout = timeout

    async def get_order(self, order_id: str) -> OrderSummary:
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
        lines = tuple(
            OrderLine(ln.product_name, ln.quantity, _money(ln.unit_price)) for ln in order.lines
        )
        return OrderSummary(order.id, _money(order.total), lines)

    def close(self) -> None:
        self._channel.close()
