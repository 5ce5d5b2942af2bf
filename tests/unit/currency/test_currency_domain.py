"""Currency core: exact conversion, the rounding rule, rate validation (no I/O)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from contextlib import asynccontextmanager
from decimal import Decimal

import pytest

from services.currency.domain import (
    Money,
    RateVersion,
    convert,
    validate_rates,
)
from services.currency.service import CurrencyService
from services.runtime.errors import InvalidArgument, NotFound

TABLE = RateVersion(
    3,
    dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    validate_rates((("EUR", Decimal("0.92")), ("JPY", Decimal("149.5")), ("GBP", Decimal("0.79")))),
)


@pytest.mark.parametrize(
    "amount,to,expected",
    [
        (Money("USD", 89), "EUR", Money("EUR", 81, 880_000_000)),
        (Money("USD", 1), "JPY", Money("JPY", 150)),  # 149.5: the half to the even 150
        (Money("USD", 3), "JPY", Money("JPY", 448)),  # 448.5: the half to the even 448
        (Money("USD", 0, 5_000_000), "EUR", Money("EUR", 0, 0)),  # 0.0046 -> 0.00
        (Money("USD", 0, 5_434_783), "EUR", Money("EUR", 0, 10_000_000)),  # 0.00500000036
        (Money("EUR", 10), "JPY", Money("JPY", 1625)),  # cross rate: 10 / 0.92 * 149.5
        (Money("USD", -2, -500_000_000), "EUR", Money("EUR", -2, -300_000_000)),
        (Money("USD", 12, 345_678_901), "USD", Money("USD", 12, 345_678_901)),  # untouched
    ],
)
def test_conversion_is_exact_and_rounds_once_half_to_even(amount, to, expected):
    assert convert(amount, to, TABLE) == expected


def test_a_currency_without_a_rate_names_the_field():
    with pytest.raises(InvalidArgument) as err:
        convert(Money("XXX", 1), "EUR", TABLE, "amounts[1]")
    assert err.value.field == "amounts[1].currency_code"
    with pytest.raises(InvalidArgument) as err:
        convert(Money("USD", 1), "CHF", TABLE)
    assert err.value.field == "to_currency_code"


def test_money_refuses_mixed_signs():
    with pytest.raises(ValueError):
        Money("USD", 1, -1)


@pytest.mark.parametrize(
    "rates,field",
    [
        ((("EUR", Decimal(1)), ("EUR", Decimal(2))), "rates[1].currency_code"),
        ((("USD", Decimal(2)),), "rates[0].units"),
        ((("EUR", Decimal(0)),), "rates[0].units"),
        ((("eur", Decimal(1)),), "rates[0].currency_code"),
    ],
)
def test_a_bad_publication_names_the_field(rates, field):
    with pytest.raises(InvalidArgument) as err:
        validate_rates(rates)
    assert field in {v.field for v in err.value.violations}


def test_the_base_currency_is_always_one():
    assert validate_rates((("EUR", Decimal("0.9")),))["USD"] == 1


class FakeRates:
    def __init__(self) -> None:
        self.current = 1
        self.asked = 0

    async def current_version(self) -> int:
        self.asked += 1
        return self.current

    async def get(self, version: int) -> RateVersion:
        return dataclasses.replace(TABLE, version=version)


class FakeUow:
    def __init__(self, repo: FakeRates) -> None:
        self.repo = repo

    @asynccontextmanager
    async def read(self):
        yield self.repo


async def test_the_version_in_effect_is_asked_at_most_once_per_ttl():
    repo, now = FakeRates(), [0.0]
    svc = CurrencyService(lambda: FakeUow(repo), current_ttl_s=1.0, clock=lambda: now[0])
    assert (await svc.table()).version == 1
    repo.current = 2  # published meanwhile
    now[0] = 0.9
    assert (await svc.table()).version == 1 and repo.asked == 1
    now[0] = 1.0
    assert (await svc.table()).version == 2 and repo.asked == 2
    assert (await svc.table(1)).version == 1 and repo.asked == 2  # a named version: cached
    no_cache = CurrencyService(lambda: FakeUow(repo), current_ttl_s=0.0, clock=lambda: 5.0)
    await no_cache.table()
    await no_cache.table()
    assert repo.asked == 4


class SlowRates(FakeRates):
    """The version in effect is answered only once `go` is set: calls pile up meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()

    async def current_version(self) -> int:
        self.asked += 1
        await self.go.wait()
        return self.current


async def test_calls_meanwhile_share_one_query_of_the_version_in_effect():
    repo = SlowRates()
    svc = CurrencyService(lambda: FakeUow(repo), current_ttl_s=1.0, clock=lambda: 0.0)
    calls = [asyncio.ensure_future(svc.table()) for _ in range(10)]
    await asyncio.sleep(0)
    repo.go.set()
    assert {t.version for t in await asyncio.gather(*calls)} == {1}
    assert repo.asked == 1


async def test_a_failed_query_of_the_version_in_effect_fails_its_waiters_and_is_asked_again():
    repo = SlowRates()
    repo.current = 0  # nothing published yet
    svc = CurrencyService(lambda: FakeUow(repo), current_ttl_s=1.0, clock=lambda: 0.0)
    calls = [asyncio.ensure_future(svc.table()) for _ in range(3)]
    await asyncio.sleep(0)
    repo.go.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, NotFound) for o in outcomes) and repo.asked == 1
    repo.current = 1
    assert (await svc.table()).version == 1 and repo.asked == 2


class TwoVersions(FakeRates):
    async def get(self, version: int) -> RateVersion:
        eur = Decimal("0.92") if version == 1 else Decimal("0.5")
        return RateVersion(version, TABLE.effective_at, validate_rates((("EUR", eur),)))


async def test_a_remembered_conversion_is_its_rate_versions_own():
    svc = CurrencyService(lambda: FakeUow(TwoVersions()), current_ttl_s=1.0, clock=lambda: 0.0)
    page = (Money("USD", 89), Money("USD", 10))
    for _ in range(2):  # computed, then remembered
        v1 = await svc.convert(page, "EUR", 1)
        v2 = await svc.convert(page, "EUR", 2)
        assert v1.amounts == (Money("EUR", 81, 880_000_000), Money("EUR", 9, 200_000_000))
        assert v2.amounts == (Money("EUR", 44, 500_000_000), Money("EUR", 5))
        assert (v1.rate_version, v2.rate_version) == (1, 2)
    with pytest.raises(InvalidArgument) as err:  # an error is not remembered as a result
        await svc.convert((Money("USD", 1), Money("XXX", 1)), "EUR", 1)
    assert err.value.field == "amounts[1].currency_code"


async def test_an_amount_off_the_wire_is_checked_until_it_converts_once():
    svc = CurrencyService(lambda: FakeUow(TwoVersions()), current_ttl_s=1.0, clock=lambda: 0.0)
    good, bad = ("USD", 1, 500_000_000), ("USD", 1, -500_000_000)  # mixed signs
    assert (await svc.convert_parts([good], "EUR", 1)).amounts == (Money("EUR", 1, 380_000_000),)
    for _ in range(2):  # refused every time: a refusal is never remembered
        with pytest.raises(InvalidArgument) as err:
            await svc.convert_parts([good, bad], "EUR", 1)
        assert err.value.field == "amounts[1]"
