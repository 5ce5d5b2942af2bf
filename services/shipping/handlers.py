"""gRPC handlers of shop.shipping.v1.ShippingService: request -> use case -> response.
Validation (buf.validate), errors and metrics are the runtime server's."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from services.runtime.rpc import unary
from services.shipping.domain import CreateQuote, Quote, QuoteLine
from services.shipping.service import ShippingService
from shop.common.v1 import common_pb2
from shop.shipping.v1 import shipping_pb2 as pb
from shop.shipping.v1.shipping_grpc import ShippingServiceBase


def _ts(t: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(t)
    return ts


def quote_proto(q: Quote) -> pb.Quote:
    return pb.Quote(
        id=q.id,
        country_code=q.country_code,
        lines=[pb.QuoteLine(product_id=ln.product_id, quantity=ln.quantity) for ln in q.lines],
        price=common_pb2.Money(
            currency_code=q.price.currency_code, units=q.price.units, nanos=q.price.nanos
        ),
        rate_version=q.rate_version,
        zone=q.zone,
        create_time=_ts(q.created_at),
        expire_time=_ts(q.expires_at),
    )


class ShippingHandlers(ShippingServiceBase):
    def __init__(self, service: ShippingService) -> None:
        self.service = service

    @unary
    async def CreateQuote(self, request: pb.CreateQuoteRequest) -> pb.CreateQuoteResponse:
        cmd = CreateQuote(
            country_code=request.country_code,
            lines=tuple(QuoteLine(ln.product_id, ln.quantity) for ln in request.lines),
            currency_code=request.currency_code,
        )
        return pb.CreateQuoteResponse(quote=quote_proto(await self.service.create_quote(cmd)))

    @unary
    async def GetQuote(self, request: pb.GetQuoteRequest) -> pb.GetQuoteResponse:
        return pb.GetQuoteResponse(quote=quote_proto(await self.service.get_quote(request.id)))
