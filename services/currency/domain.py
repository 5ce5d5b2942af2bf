"""Currency domain: exact money, versioned rate tables and conversion. Stdlib only.

Amounts are units + nanos (google.type.Money) and become `Decimal` only inside a
conversion; nothing passes through binary floating point. The rounding rule: a converted
amount is computed exactly (50 significant digits), then rounded once, half to even, to
the target currency's minor unit (2 decimals; 0 for JPY and KRW). Converting into the
amount's own currency returns it unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal

from services.runtime.errors import FieldViolation, InvalidArgument, NotFound

NANOS = 1_000_000_000
BASE_CURRENCY = "USD"  # the catalog's currency: every rate is per one of it
MINOR_UNITS: Mapping[str, int] = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0}
MAX_RATE = Decimal(1_000_000_000)
_EXACT = Context(prec=50)


def minor_unit(currency_code: str) -> int:
    """Decimal places of a currency's smallest unit (ISO 4217; 2 unless listed)."""
    return MINOR_UNITS.get(currency_code, 2)


@dataclass(frozen=True)
class Money:
    """An amount in one currency: units + nanos of the same sign."""

    currency_code: str
    units: int
    nanos: int = 0

    def __post_init__(self) -> None:
        if not -NANOS < self.nanos < NANOS:
            raise ValueError("nanos must be within +-999,999,999")
        if (self.units > 0 and self.nanos < 0) or (self.units < 0 and self.nanos > 0):
            raise ValueError("units and nanos must have the same sign")

    def to_decimal(self) -> Decimal:
        return Decimal(self.units) + Decimal(self.nanos).scaleb(-9)

    @classmethod
    def from_decimal(cls, currency_code: str, value: Decimal) -> Money:
        """Exact when `value` has at most 9 decimals (finer digits are cut toward zero)."""
        total = int(value.scaleb(9).to_integral_value(rounding=ROUND_DOWN))
        units = abs(total) // NANOS * (1 if total >= 0 else -1)
        return cls(currency_code, units, total - units * NANOS)


def rate_of(units: int, nanos: int) -> Decimal:
    return Decimal(units) + Decimal(nanos).scaleb(-9)


def rate_parts(rate: Decimal) -> tuple[int, int]:
    units = int(rate.to_integral_value(rounding=ROUND_DOWN))
    return units, int(((rate - units).scaleb(9)).to_integral_value(rounding=ROUND_DOWN))


@dataclass(frozen=True)
class RateVersion:
    """One published, immutable set of rates: units of each currency per base unit."""

    version: int
    effective_at: dt.datetime
    rates: Mapping[str, Decimal]
    base: str = BASE_CURRENCY

    @property
    def currency_codes(self) -> tuple[str, ...]:
        """Base first, then alphabetical."""
        return (self.base, *sorted(c for c in self.rates if c != self.base))


@dataclass(frozen=True)
class Conversion:
    amounts: tuple[Money, ...]
    rate_version: int


@dataclass(frozen=True)
class PublishRates:
    rates: tuple[tuple[str, Decimal], ...]  # as sent: a code listed twice is refused
    effective_at: dt.datetime | None = None


class NoRatesError(NotFound):
    def __init__(self, version: int = 0) -> None:
        super().__init__(f"rate version {version} not found" if version else "no rates published")


def convert(amount: Money, to: str, table: RateVersion, field: str = "amounts") -> Money:
    """`amount` in currency `to` with `table`'s rates (the module's rounding rule)."""
    if amount.currency_code == to:
        return amount
    src = table.rates.get(amount.currency_code)
    if src is None:
        raise InvalidArgument(f"{field}.currency_code", f"no rate for {amount.currency_code}")
    dst = table.rates.get(to)
    if dst is None:
        raise InvalidArgument("to_currency_code", f"no rate for {to}")
    exact = _EXACT.divide(_EXACT.multiply(amount.to_decimal(), dst), src)
    rounded = exact.quantize(Decimal(1).scaleb(-minor_unit(to)), rounding=ROUND_HALF_EVEN)
    return Money.from_decimal(to, rounded)


def validate_rates(rates: tuple[tuple[str, Decimal], ...]) -> dict[str, Decimal]:
    """A publication's rates, checked, with the base currency at exactly 1."""
    bad: list[FieldViolation] = []
    seen: dict[str, Decimal] = {}
    for i, (code, rate) in enumerate(rates):
        if not (len(code) == 3 and code.isascii() and code.isupper() and code.isalpha()):
            bad.append(FieldViolation(f"rates[{i}].currency_code", "must be ISO 4217"))
        elif code in seen:
            bad.append(FieldViolation(f"rates[{i}].currency_code", f"{code} is listed twice"))
        elif rate <= 0 or rate > MAX_RATE:
            bad.append(FieldViolation(f"rates[{i}].units", "rate must be > 0 and <= 1e9"))
        elif code == BASE_CURRENCY and rate != 1:
            bad.append(FieldViolation(f"rates[{i}].units", f"{BASE_CURRENCY} is the base: 1"))
        seen[code] = rate
    if bad:
        raise InvalidArgument.many(bad)
    return {**seen, BASE_CURRENCY: Decimal(1)}
