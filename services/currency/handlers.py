"""gRPC handlers of shop.currency.v1.CurrencyService: request -> use case -> response.
Validation (buf.validate), errors and metrics are the runtime server's."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp

from services.currency.domain import Money, PublishRates, RateVersion, rate_of, rate_parts
from services.currency.service import CurrencyService
from services.runtime.memo import BoundedMemo
from services.runtime.rpc import unary
from shop.common.v1 import common_pb2
from shop.currency.v1 import currency_pb2 as pb
from shop.currency.v1.currency_grpc import CurrencyServiceBase

MONEY_KEPT = 10_000


def money_proto(m: Money) -> common_pb2.Money:
    return common_pb2.Money(currency_code=m.currency_code, units=m.units, nanos=m.nanos)


def version_proto(v: RateVersion) -> pb.RateVersion:
    at = Timestamp()
    at.FromDatetime(v.effective_at)
    rates = []
    for code in v.currency_codes:
        units, nanos = rate_parts(v.rates[code])
        rates.append(pb.Rate(currency_code=code, units=units, nanos=nanos))
    return pb.RateVersion(
        version=v.version, base_currency_code=v.base, effective_time=at, rates=rates
    )


class CurrencyHandlers(CurrencyServiceBase):
    def __init__(self, service: CurrencyService) -> None:
        self.service = service
        # A version never changes, so neither does its listing: built once per version in
        # effect (the response is only serialized, never changed, after it is returned).
        self._listing: tuple[RateVersion, pb.ListCurrenciesResponse] | None = None
        self._money: BoundedMemo[Money, common_pb2.Money] = BoundedMemo(MONEY_KEPT)

    @unary
    async def ListCurrencies(self, request: pb.ListCurrenciesRequest) -> pb.ListCurrenciesResponse:
        table = await self.service.table()
        if self._listing is None or self._listing[0] is not table:
            reply = pb.ListCurrenciesResponse(
                currency_codes=table.currency_codes, current=version_proto(table)
            )
            self._listing = (table, reply)
        return self._listing[1]

    @unary
    async def Convert(self, request: pb.ConvertRequest) -> pb.ConvertResponse:
        # The storefront converts the same catalog prices over and over: amounts go to the
        # service as plain tuples (it checks each one the first time it sees it) and each
        # converted amount's message is built once (messages are only read after this).
        result = await self.service.convert_parts(
            [(a.currency_code, a.units, a.nanos) for a in request.amounts],
            request.to_currency_code,
            request.rate_version,
        )
        built, msgs = self._money, []
        for m in result.amounts:
            msg = built.get(m)
            msgs.append(msg if msg is not None else built.keep(m, money_proto(m)))
        reply = pb.ConvertResponse(rate_version=result.rate_version)
        reply.amounts.extend(msgs)
        return reply

    @unary
    async def PublishRates(self, request: pb.PublishRatesRequest) -> pb.PublishRatesResponse:
        rates: tuple[tuple[str, Decimal], ...] = tuple(
            (r.currency_code, rate_of(r.units, r.nanos)) for r in request.rates
        )
        at = None
        if request.HasField("effective_time"):
            at = request.effective_time.ToDatetime(tzinfo=dt.UTC)
        version = await self.service.publish(PublishRates(rates, at))
        return pb.PublishRatesResponse(version=version_proto(version))
