"""Currency service over real gRPC against the real PostgreSQL primary: the demo rates,
exact conversion with its rounding rule, versioned publication, bad input naming the field."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from services.currency.demo import DEMO_RATES
from shop.common.v1 import common_pb2
from shop.currency.v1 import currency_pb2 as pb

pytestmark = pytest.mark.stack


def money(code: str, units: int, nanos: int = 0) -> common_pb2.Money:
    return common_pb2.Money(currency_code=code, units=units, nanos=nanos)


async def error_of(coro) -> GRPCError:
    with pytest.raises(GRPCError) as err:
        await coro
    return err.value


def rate_request(rates, effective: dt.datetime | None = None) -> pb.PublishRatesRequest:
    req = pb.PublishRatesRequest(
        rates=[
            pb.Rate(currency_code=c, units=int(r), nanos=int((r - int(r)) * 10**9))
            for c, r in rates
        ]
    )
    if effective is not None:
        ts = Timestamp()
        ts.FromDatetime(effective)
        req.effective_time.CopyFrom(ts)
    return req


async def test_list_currencies_shows_the_rates_in_effect_base_first(currency_stub):
    reply = await currency_stub.ListCurrencies(pb.ListCurrenciesRequest())
    assert reply.currency_codes[0] == "USD"
    assert set(reply.currency_codes) >= {"USD", "EUR", "GBP", "JPY", "CAD", "CHF"}
    rates = {r.currency_code: (r.units, r.nanos) for r in reply.current.rates}
    assert rates["USD"] == (1, 0)
    assert rates["EUR"] == (0, 920_000_000)
    assert reply.current.version >= 1 and reply.current.base_currency_code == "USD"


async def test_convert_is_exact_and_rounds_half_to_even_to_the_minor_unit(currency_stub):
    reply = await currency_stub.Convert(
        pb.ConvertRequest(
            amounts=[
                money("USD", 89),  # 81.88 EUR exactly
                money("USD", 59, 900_000_000),  # 59.90 * 149.5 = 8955.05 -> 8955 JPY
                money("USD", 1),  # 149.5 JPY: the half goes to the even 150
                money("USD", 3),  # 448.5 JPY: the half goes to the even 448
                money("USD", 0, 10_000_000),  # 0.01 * 0.92 = 0.0092 -> 0.01 EUR
            ],
            to_currency_code="JPY",
        )
    )
    got = [(m.currency_code, m.units, m.nanos) for m in reply.amounts]
    assert got[1:4] == [("JPY", 8955, 0), ("JPY", 150, 0), ("JPY", 448, 0)]
    eur = await currency_stub.Convert(
        pb.ConvertRequest(amounts=[money("USD", 89), money("USD", 0, 10_000_000)],
                          to_currency_code="EUR")
    )  # fmt: skip
    assert [(m.units, m.nanos) for m in eur.amounts] == [(81, 880_000_000), (0, 10_000_000)]
    same = await currency_stub.Convert(
        pb.ConvertRequest(amounts=[money("USD", 12, 345_678_901)], to_currency_code="USD")
    )
    assert (same.amounts[0].units, same.amounts[0].nanos) == (12, 345_678_901)  # untouched


async def test_a_published_version_takes_effect_and_old_versions_still_convert(currency_stub):
    before = (await currency_stub.ListCurrencies(pb.ListCurrenciesRequest())).current.version
    # The demo figures again (other tests and the storefront keep their prices), as a new
    # version effective now; and one effective in 2100 with another EUR rate.
    now = await currency_stub.PublishRates(rate_request(DEMO_RATES))
    later_rates = [(c, r) for c, r in DEMO_RATES if c != "EUR"] + [("EUR", 2)]
    later = await currency_stub.PublishRates(
        rate_request(later_rates, dt.datetime(2100, 1, 1, tzinfo=dt.UTC))
    )
    assert before < now.version.version < later.version.version
    # In effect within CURRENCY_CURRENT_TTL_S (1 s) of its effective time; 2100 is not here.
    deadline = time.monotonic() + 3
    while True:
        current = (await currency_stub.ListCurrencies(pb.ListCurrenciesRequest())).current
        if current.version == now.version.version or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert current.version == now.version.version
    req = pb.ConvertRequest(amounts=[money("USD", 10)], to_currency_code="EUR")
    assert (await currency_stub.Convert(req)).rate_version == now.version.version
    req.rate_version = later.version.version
    assert (await currency_stub.Convert(req)).amounts[0].units == 20
    req.rate_version = before
    old = await currency_stub.Convert(req)
    assert (old.rate_version, old.amounts[0].units, old.amounts[0].nanos) == (before, 9, 2 * 10**8)


@pytest.mark.parametrize(
    "request_,field",
    [
        (pb.ConvertRequest(amounts=[money("USD", 1)], to_currency_code="eur"), "to_currency_code"),
        (pb.ConvertRequest(amounts=[money("USD", 1)], to_currency_code="XXX"), "to_currency_code"),
        (pb.ConvertRequest(to_currency_code="EUR"), "amounts"),
        (pb.ConvertRequest(amounts=[money("USD", 1)], to_currency_code="EUR", rate_version=-1),
         "rate_version"),
        (pb.ConvertRequest(amounts=[money("USD", 1), money("USD", 1, -5)], to_currency_code="EUR"),
         "amounts[1]"),
        (pb.ConvertRequest(amounts=[money("ZZZ", 1)], to_currency_code="EUR"),
         "amounts[0].currency_code"),
    ],
)  # fmt: skip
async def test_bad_conversion_input_is_invalid_argument_naming_the_field(
    currency_stub, request_, field
):
    err = await error_of(currency_stub.Convert(request_))
    assert err.status is Status.INVALID_ARGUMENT
    assert field in (err.message or ""), err.message


async def test_an_unknown_rate_version_is_not_found(currency_stub):
    req = pb.ConvertRequest(amounts=[money("USD", 1)], to_currency_code="EUR", rate_version=10**12)
    assert (await error_of(currency_stub.Convert(req))).status is Status.NOT_FOUND


@pytest.mark.parametrize(
    "rates,field",
    [
        ([("EUR", 1), ("EUR", 2)], "rates[1].currency_code"),
        ([("USD", 2)], "rates[0].units"),
        ([("EUR", 0)], "rates[0].units"),
    ],
)
async def test_a_bad_publication_is_refused_naming_the_field_and_stores_nothing(
    currency_stub, rates, field
):
    before = (await currency_stub.ListCurrencies(pb.ListCurrenciesRequest())).current.version
    err = await error_of(currency_stub.PublishRates(rate_request(rates)))
    assert err.status is Status.INVALID_ARGUMENT and field in (err.message or "")
    after = (await currency_stub.ListCurrencies(pb.ListCurrenciesRequest())).current.version
    assert after == before
