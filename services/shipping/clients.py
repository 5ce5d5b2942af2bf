"""gRPC adapter of the Converter port (CurrencyService.Convert): statuses become the
shipping domain's errors here and only here."""

from __future__ import annotations

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from services.runtime.auth import authenticate_channel
from services.runtime.errors import InvalidArgument
from services.runtime.policy import method_policy
from services.runtime.rpc import call_metadata
from services.runtime.tracing import instrument_channel
from services.shipping.domain import CurrencyUnavailableError, Money
from shop.common.v1 import common_pb2
from shop.currency.v1 import currency_pb2
from shop.currency.v1.currency_grpc import CurrencyServiceStub


class GrpcConverter:
    """A runtime Resource owning its channel to the currency service."""

    def __init__(self, host: str, port: int) -> None:
        self.channel = authenticate_channel(instrument_channel(Channel(host, port)))
        self.stub = CurrencyServiceStub(self.channel)
        self.timeout = method_policy("/shop.currency.v1.CurrencyService/Convert").timeout_s

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        self.channel.close()

    async def convert(self, amount: Money, currency_code: str) -> tuple[Money, int]:
        req = currency_pb2.ConvertRequest(
            amounts=[
                common_pb2.Money(
                    currency_code=amount.currency_code, units=amount.units, nanos=amount.nanos
                )
            ],
            to_currency_code=currency_code,
        )
        try:
            reply = await self.stub.Convert(req, timeout=self.timeout, metadata=call_metadata())
        except GRPCError as exc:
            if exc.status is Status.INVALID_ARGUMENT:
                raise InvalidArgument("currency_code", exc.message or "no rate") from None
            raise CurrencyUnavailableError(f"currency: {exc.status.name}") from None
        except (ConnectionError, OSError, StreamTerminatedError, TimeoutError) as exc:
            raise CurrencyUnavailableError(f"currency service unreachable: {exc}") from None
        m = reply.amounts[0]
        return Money(m.currency_code, m.units, m.nanos), reply.rate_version
