"""Shipping domain: price rules (zones), quotes and their errors. Stdlib only.

A quote is priced in the base currency by its destination's zone (base fee plus a fee per
unit; exact decimals), then converted into the shopper's currency (the currency port).
The same cart, destination, rules and rate version always give the same price.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from services.runtime.errors import InvalidArgument, NotFound, Unavailable

NANOS = 1_000_000_000
BASE_CURRENCY = "USD"
ANY_COUNTRY = "*"


@dataclass(frozen=True)
class Money:
    currency_code: str
    units: int
    nanos: int = 0

    @classmethod
    def of(cls, currency_code: str, amount: Decimal) -> Money:
        total = int(amount.scaleb(9))
        units = abs(total) // NANOS * (1 if total >= 0 else -1)
        return cls(currency_code, units, total - units * NANOS)


@dataclass(frozen=True)
class Zone:
    name: str
    countries: frozenset[str]
    base: Decimal
    per_unit: Decimal


@dataclass(frozen=True)
class Rules:
    """Zones by name; every country falls in exactly one (the ANY_COUNTRY zone last)."""

    zones: tuple[Zone, ...]

    @classmethod
    def parse(cls, data: Mapping[str, object], source: str = "rules") -> Rules:
        zones = []
        raw = data.get("zones")
        if not isinstance(raw, Mapping) or not raw:
            raise ValueError(f"{source}: `zones` must map zone names to rules")
        seen: set[str] = set()
        for name, z in raw.items():
            if not isinstance(z, Mapping):
                raise ValueError(f"{source}: zones.{name} must be a mapping")
            countries = frozenset(c for c in z.get("countries", ()) if isinstance(c, str))
            if len(countries) != len(z.get("countries", ())):
                raise ValueError(f"{source}: zones.{name}.countries must be strings (quote NO)")
            if not countries or countries & seen:
                raise ValueError(f"{source}: zones.{name}.countries empty or listed twice")
            seen |= countries
            try:
                base, per_unit = Decimal(str(z["base"])), Decimal(str(z["per_unit"]))
            except (KeyError, ArithmeticError):
                raise ValueError(
                    f"{source}: zones.{name} needs decimal base and per_unit"
                ) from None
            if base < 0 or per_unit < 0:
                raise ValueError(f"{source}: zones.{name}: fees must not be negative")
            zones.append(Zone(str(name), countries, base, per_unit))
        if ANY_COUNTRY not in seen:
            raise ValueError(f"{source}: one zone must list {ANY_COUNTRY!r} (every other country)")
        return cls(tuple(zones))

    def zone_of(self, country_code: str) -> Zone:
        for zone in self.zones:
            if country_code in zone.countries:
                return zone
        return next(z for z in self.zones if ANY_COUNTRY in z.countries)

    def price(self, country_code: str, units: int) -> tuple[Zone, Money]:
        zone = self.zone_of(country_code)
        return zone, Money.of(BASE_CURRENCY, zone.base + zone.per_unit * units)


@dataclass(frozen=True)
class QuoteLine:
    product_id: str
    quantity: int


@dataclass(frozen=True)
class Quote:
    id: str
    country_code: str
    lines: tuple[QuoteLine, ...]
    price: Money
    rate_version: int
    zone: str
    created_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class CreateQuote:
    country_code: str
    lines: tuple[QuoteLine, ...]
    currency_code: str = ""  # empty: the base currency


class QuoteNotFoundError(NotFound):
    def __init__(self, quote_id: str) -> None:
        super().__init__(f"shipping quote {quote_id} not found")


class CurrencyUnavailableError(Unavailable):
    """The quote cannot be converted now; the storefront says "quote unavailable"."""


def merge_lines(lines: tuple[QuoteLine, ...]) -> tuple[QuoteLine, ...]:
    """One line per product, in first-seen order (as the order merges its lines)."""
    merged: dict[str, int] = {}
    for line in lines:
        merged[line.product_id] = merged.get(line.product_id, 0) + line.quantity
    return tuple(QuoteLine(p, q) for p, q in merged.items())


def validate(cmd: CreateQuote) -> None:
    """The schema's rules again at the core (defence in depth)."""
    if not (
        len(cmd.country_code) == 2 and cmd.country_code.isalpha() and cmd.country_code.isupper()
    ):
        raise InvalidArgument("country_code", "must be ISO 3166-1 alpha-2, e.g. DE")
    if not cmd.lines:
        raise InvalidArgument("lines", "at least one line is required")


def new_quote_id() -> str:
    return uuid.uuid4().hex
