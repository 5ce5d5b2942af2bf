"""gRPC adapters of the Catalog, UserDirectory, Rates and Quotes ports (generated grpclib
stubs).

Every call has a deadline (the callee's schema timeout, shortened to what is left of our
own request's deadline is the server's job: grpclib cancels us past it). ReserveStock and
ReleaseStock are idempotent by order id, so they are retried on UNAVAILABLE; GetUser is a
read and retried the same way. Statuses become the order domain's errors here and only here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Sequence

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from services.order.domain import (
    LineItem,
    Money,
    OrderLine,
)
from services.order.errors import (
    CatalogUnavailableError,
    OutOfStockError,
    PlacementAbandonedError,
    UnknownProductError,
    UserServiceUnavailableError,
)
from services.order.pricing import (
    CurrencyUnavailableError,
    ShippingQuote,
    ShippingUnavailableError,
)
from services.runtime.auth import authenticate_channel
from services.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
)
from services.runtime.policy import method_policy
from services.runtime.rpc import call_metadata
from services.runtime.tracing import instrument_channel
from shop.common.v1 import common_pb2
from shop.currency.v1 import currency_pb2
from shop.currency.v1.currency_grpc import CurrencyServiceStub
from shop.product.v1 import product_pb2
from shop.product.v1.product_grpc import ProductServiceStub
from shop.shipping.v1 import shipping_pb2
from shop.shipping.v1.shipping_grpc import ShippingServiceStub
from shop.user.v1 import user_pb2
from shop.user.v1.user_grpc import UserServiceStub

log = logging.getLogger(__name__)

RETRYABLE = (Status.UNAVAILABLE,)
BACKOFF_S = (0.05, 0.2, 0.5)


async def _retrying(call, attempts: int, what: str):  # type: ignore[no-untyped-def]
    """Run `call` until it does not fail with UNAVAILABLE (or a dropped connection)."""
    for attempt in range(attempts):
        try:
            return await call()
        except GRPCError as exc:
            if exc.status not in RETRYABLE or attempt == attempts - 1:
                raise
        except (ConnectionError, OSError, StreamTerminatedError):
            if attempt == attempts - 1:
                raise
        log.info("retrying %s", what, extra={"fields": {"attempt": attempt + 1}})
        await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
    raise AssertionError("unreachable")


class GrpcCatalog:
    """Catalog port over ProductService; a runtime Resource owning its channel."""

    def __init__(self, host: str, port: int, *, attempts: int = 3) -> None:
        self.channel = authenticate_channel(instrument_channel(Channel(host, port)))
        self.stub = ProductServiceStub(self.channel)
        self.attempts = attempts
        self.reserve_timeout = method_policy(
            "/shop.product.v1.ProductService/ReserveStock"
        ).timeout_s
        self.release_timeout = method_policy(
            "/shop.product.v1.ProductService/ReleaseStock"
        ).timeout_s

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        self.channel.close()

    async def reserve_stock(self, order_id: str, items: Sequence[LineItem]) -> list[OrderLine]:
        req = product_pb2.ReserveStockRequest(
            order_id=order_id,
            lines=[
                product_pb2.StockLine(product_id=i.product_id, quantity=i.quantity) for i in items
            ],
        )
        try:
            reply = await _retrying(
                lambda: self.stub.ReserveStock(
                    req, timeout=self.reserve_timeout, metadata=call_metadata()
                ),
                self.attempts,
                "ReserveStock",
            )
        except GRPCError as exc:
            raise _reserve_error(exc, order_id, items) from None
        except (ConnectionError, OSError, StreamTerminatedError, TimeoutError) as exc:
            raise CatalogUnavailableError(f"product service unreachable: {exc}") from None
        return [
            OrderLine(
                line.product_id,
                line.name,
                line.quantity,
                Money(line.unit_price.currency_code, line.unit_price.units, line.unit_price.nanos),
            )
            for line in reply.lines
        ]

    async def release_stock(self, order_id: str) -> bool:
        req = product_pb2.ReleaseStockRequest(order_id=order_id)
        try:
            reply = await _retrying(
                lambda: self.stub.ReleaseStock(
                    req, timeout=self.release_timeout, metadata=call_metadata()
                ),
                self.attempts,
                "ReleaseStock",
            )
        except (GRPCError, ConnectionError, OSError, StreamTerminatedError, TimeoutError) as exc:
            raise CatalogUnavailableError(f"ReleaseStock failed: {exc}") from None
        return reply.released


def _reserve_error(exc: GRPCError, order_id: str, items: Sequence[LineItem]) -> Exception:
    msg = exc.message or ""

    def product_in_message() -> int:
        for i, item in enumerate(items):
            if re.search(
                rf"['\" ]{re.escape(item.product_id)}['\" ]|{re.escape(item.product_id)}$", msg
            ):
                return i
        return -1

    if exc.status is Status.NOT_FOUND:
        i = product_in_message()
        pid = items[i].product_id if i >= 0 else "?"
        return UnknownProductError(f"lines[{max(i, 0)}].product_id", pid)
    if exc.status is Status.FAILED_PRECONDITION:
        if "released" in msg:
            return PlacementAbandonedError(order_id)
        i = product_in_message()
        if "stock" in msg:
            return OutOfStockError(items[i].product_id if i >= 0 else "", msg)
        return FailedPrecondition(msg)
    if exc.status is Status.INVALID_ARGUMENT:
        return InvalidArgument("lines", msg)
    return CatalogUnavailableError(f"ReserveStock: {exc.status.name} {msg}")


class GrpcUsers:
    """UserDirectory port over UserService.GetUser."""

    def __init__(self, host: str, port: int, *, attempts: int = 3) -> None:
        self.channel = authenticate_channel(instrument_channel(Channel(host, port)))
        self.stub = UserServiceStub(self.channel)
        self.attempts = attempts
        self.timeout = method_policy("/shop.user.v1.UserService/GetUser").timeout_s

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        self.channel.close()

    async def user_exists(self, user_id: str) -> bool:
        req = user_pb2.GetUserRequest(id=user_id)
        try:
            await _retrying(
                lambda: self.stub.GetUser(req, timeout=self.timeout, metadata=call_metadata()),
                self.attempts,
                "GetUser",
            )
        except GRPCError as exc:
            if exc.status is Status.NOT_FOUND:
                return False
            raise UserServiceUnavailableError(f"GetUser: {exc.status.name}") from None
        except (ConnectionError, OSError, StreamTerminatedError, TimeoutError) as exc:
            raise UserServiceUnavailableError(f"user service unreachable: {exc}") from None
        return True


class GrpcRates:
    """Rates port over CurrencyService.Convert (a read: retried on UNAVAILABLE)."""

    def __init__(self, host: str, port: int, *, attempts: int = 2) -> None:
        self.channel = authenticate_channel(instrument_channel(Channel(host, port)))
        self.stub = CurrencyServiceStub(self.channel)
        self.attempts = attempts
        self.timeout = method_policy("/shop.currency.v1.CurrencyService/Convert").timeout_s

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        self.channel.close()

    async def convert(
        self, amounts: Sequence[Money], currency_code: str, rate_version: int = 0
    ) -> tuple[list[Money], int]:
        req = currency_pb2.ConvertRequest(
            amounts=[_money_pb(m) for m in amounts],
            to_currency_code=currency_code,
            rate_version=rate_version,
        )
        try:
            reply = await _retrying(
                lambda: self.stub.Convert(req, timeout=self.timeout, metadata=call_metadata()),
                self.attempts,
                "Convert",
            )
        except GRPCError as exc:
            if exc.status is Status.INVALID_ARGUMENT:
                raise InvalidArgument("currency_code", exc.message or "no rate") from None
            raise CurrencyUnavailableError(f"Convert: {exc.status.name}") from None
        except (ConnectionError, OSError, StreamTerminatedError, TimeoutError) as exc:
            raise CurrencyUnavailableError(f"currency service unreachable: {exc}") from None
        return [_money(m) for m in reply.amounts], reply.rate_version


class GrpcQuotes:
    """Quotes port over ShippingService.GetQuote (a read: retried on UNAVAILABLE)."""

    def __init__(self, host: str, port: int, *, attempts: int = 2) -> None:
        self.channel = authenticate_channel(instrument_channel(Channel(host, port)))
        self.stub = ShippingServiceStub(self.channel)
        self.attempts = attempts
        self.timeout = method_policy("/shop.shipping.v1.ShippingService/GetQuote").timeout_s

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        self.channel.close()

    async def get_quote(self, quote_id: str) -> ShippingQuote | None:
        req = shipping_pb2.GetQuoteRequest(id=quote_id)
        try:
            reply = await _retrying(
                lambda: self.stub.GetQuote(req, timeout=self.timeout, metadata=call_metadata()),
                self.attempts,
                "GetQuote",
            )
        except GRPCError as exc:
            if exc.status is Status.NOT_FOUND:
                return None
            raise ShippingUnavailableError(f"GetQuote: {exc.status.name}") from None
        except (ConnectionError, OSError, StreamTerminatedError, TimeoutError) as exc:
            raise ShippingUnavailableError(f"shipping service unreachable: {exc}") from None
        q = reply.quote
        return ShippingQuote(
            id=q.id,
            country_code=q.country_code,
            lines=tuple(LineItem(ln.product_id, ln.quantity) for ln in q.lines),
            price=_money(q.price),
            rate_version=q.rate_version,
            expires_at=q.expire_time.ToDatetime(tzinfo=dt.UTC),
        )


def _money(m: common_pb2.Money) -> Money:
    return Money(m.currency_code, m.units, m.nanos)


def _money_pb(m: Money) -> common_pb2.Money:
    return common_pb2.Money(currency_code=m.currency_code, units=m.units, nanos=m.nanos)
