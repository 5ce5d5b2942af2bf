"""Shipping quotes over real gRPC against the real PostgreSQL primary and the stack's
currency service: deterministic prices from the rules, kept quotes, bad input naming the
field, and a dead currency service refusing only quotes that need it."""

from __future__ import annotations

import socket

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from shop.common.v1 import common_pb2
from shop.currency.v1 import currency_pb2
from shop.currency.v1.currency_grpc import CurrencyServiceStub
from shop.shipping.v1 import shipping_pb2 as pb
from shop.topology import SERVICES
from tests.integration.shipping.conftest import shipping_app

pytestmark = pytest.mark.stack


def lines(*pq: tuple[str, int]) -> list[pb.QuoteLine]:
    return [pb.QuoteLine(product_id=p, quantity=q) for p, q in pq]


async def test_a_quote_is_priced_by_the_rules_converted_and_kept(shipping):
    req = pb.CreateQuoteRequest(
        country_code="DE", currency_code="EUR", lines=lines(("p-1", 2), ("p-2", 1), ("p-1", 1))
    )
    quote = (await shipping.CreateQuote(req)).quote
    assert [(ln.product_id, ln.quantity) for ln in quote.lines] == [("p-1", 3), ("p-2", 1)]
    assert quote.zone == "europe" and quote.rate_version > 0
    # europe: 9.90 + 4 x 1.00 = 13.90 USD, converted by the currency service at that version.
    channel = Channel("127.0.0.1", SERVICES["currency"].port)
    try:
        expected = await CurrencyServiceStub(channel).Convert(
            currency_pb2.ConvertRequest(
                amounts=[common_pb2.Money(currency_code="USD", units=13, nanos=900_000_000)],
                to_currency_code="EUR", rate_version=quote.rate_version,
            )
        )  # fmt: skip
    finally:
        channel.close()
    assert quote.price == expected.amounts[0]
    assert quote.expire_time.ToSeconds() - quote.create_time.ToSeconds() == 900
    again = await shipping.CreateQuote(req)
    assert again.quote.id != quote.id and again.quote.price == quote.price  # deterministic
    got = (await shipping.GetQuote(pb.GetQuoteRequest(id=quote.id))).quote
    assert got == quote


async def test_a_quote_in_the_base_currency_needs_no_conversion(shipping):
    req = pb.CreateQuoteRequest(country_code="US", lines=lines(("p-1", 2)))
    quote = (await shipping.CreateQuote(req)).quote
    assert (quote.price.currency_code, quote.price.units, quote.price.nanos) == (
        "USD",
        5,
        990_000_000,
    )
    assert quote.rate_version == 0


async def test_an_unknown_quote_is_not_found(shipping):
    with pytest.raises(GRPCError) as err:
        await shipping.GetQuote(pb.GetQuoteRequest(id="no-such-quote"))
    assert err.value.status is Status.NOT_FOUND


@pytest.mark.parametrize(
    "request_,field",
    [
        (pb.CreateQuoteRequest(country_code="de", lines=lines(("p-1", 1))), "country_code"),
        (pb.CreateQuoteRequest(country_code="DE"), "lines"),
        (pb.CreateQuoteRequest(country_code="DE", lines=lines(("p-1", 0))), "lines[0].quantity"),
        (pb.CreateQuoteRequest(country_code="DE", lines=lines(("bad id!", 1))),
         "lines[0].product_id"),
        (pb.CreateQuoteRequest(country_code="DE", lines=lines(("p-1", 1)), currency_code="eur"),
         "currency_code"),
        (pb.CreateQuoteRequest(country_code="DE", lines=lines(("p-1", 1)), currency_code="XXX"),
         "currency_code"),
    ],
)  # fmt: skip
async def test_bad_input_is_invalid_argument_naming_the_field(shipping, request_, field):
    with pytest.raises(GRPCError) as err:
        await shipping.CreateQuote(request_)
    assert err.value.status is Status.INVALID_ARGUMENT and field in (err.value.message or "")


async def test_a_dead_currency_service_refuses_converted_quotes_only(infra):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    async with shipping_app(
        "shipping-dead-currency", SHIPPING_CURRENCY_ADDR=f"127.0.0.1:{dead}"
    ) as stub:
        with pytest.raises(GRPCError) as err:
            await stub.CreateQuote(
                pb.CreateQuoteRequest(country_code="DE", currency_code="EUR", lines=lines(("p", 1)))
            )
        assert err.value.status is Status.UNAVAILABLE  # the checkout says "unavailable"
        usd = await stub.CreateQuote(
            pb.CreateQuoteRequest(country_code="DE", lines=lines(("p", 1)))
        )
        assert usd.quote.price.currency_code == "USD"
