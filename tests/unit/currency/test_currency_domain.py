"""Currency core: exact conversion, the rounding rule, rate validation (no I/O)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from contextlib import asynccontextmanager
from decimal import Decimal

import pytest

from services.currency.domain import (
    Money,
    RateVersion,
    convert,
    convert_all,
    validate_rates,
)
from services.currency.service import CurrencyService
from services.runtime.errors import InvalidArgument

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
        convert_all((Money("USD", 1), Money("XXX", 1)), "EUR", TABLE)
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
