"""What an order charges beyond its catalog lines: the shopper's currency (converted by the
currency service) and shipping (a quote of the shipping service, or the default rule).

Stdlib and the order domain only. Degradation, decided here and nowhere else:
- no quote named, or the shipping service cannot be asked: shipping costs the default rule
  (`ORDER_DEFAULT_SHIPPING`, in the catalog's currency, converted like the lines), and the
  order records no quote;
- the currency service cannot be asked: the order is placed in the catalog's currency (its
  `currency_code` says so), shipping by the default rule (a quote in another currency
  cannot be honoured then);
- a quote that is unknown, expired, or made for other lines, another destination or
  another currency refuses the order (INVALID_ARGUMENT / FAILED_PRECONDITION naming
  shipping_quote_id): the shopper saw a price the order would not charge.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from services.order.domain import (
    LineItem,
    Money,
    Order,
)
from services.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    Unavailable,
)

if TYPE_CHECKING:
    from services.order.ports import Quotes, Rates


@dataclass(frozen=True)
class ShippingQuote:
    """A shipping price for some lines to a country (the shipping service's Quote)."""

    id: str
    country_code: str
    lines: tuple[LineItem, ...]
    price: Money
    rate_version: int
    expires_at: dt.datetime


@dataclass(frozen=True)
class Pricing:
    """What an order charges beyond the catalog lines: the currency (and rate version) its
    lines were converted with, their converted unit prices (in reservation order), and
    shipping (from the quote, or the default rule when there is no usable quote)."""

    currency_code: str
    rate_version: int
    unit_prices: tuple[Money, ...]
    shipping_cost: Money
    shipping_quote_id: str = ""


class CurrencyUnavailableError(Unavailable):
    pass


class ShippingUnavailableError(Unavailable):
    pass


class UnknownQuoteError(InvalidArgument):
    def __init__(self, quote_id: str) -> None:
        super().__init__("shipping_quote_id", f"unknown shipping quote {quote_id}")


class QuoteMismatchError(InvalidArgument):
    def __init__(self, why: str) -> None:
        super().__init__("shipping_quote_id", why)


class QuoteExpiredError(FailedPrecondition):
    def __init__(self, quote_id: str) -> None:
        super().__init__(f"shipping_quote_id: quote {quote_id} has expired, ask for a new one")


def check_quote(quote: ShippingQuote, order: Order, now: dt.datetime) -> None:
    """A quote an order may be placed with: made for this order's lines and destination,
    and not expired (its currency is checked once the order's is known: Pricer.price)."""
    if quote.expires_at <= now:
        raise QuoteExpiredError(quote.id)
    country = order.shipping_address.country_code
    if quote.country_code != country:
        raise QuoteMismatchError(
            f"the quote is for {quote.country_code}, the order ships to {country}"
        )
    if sorted((i.product_id, i.quantity) for i in quote.lines) != sorted(
        (i.product_id, i.quantity) for i in order.items
    ):
        raise QuoteMismatchError("the quote was made for other lines than the order's")


class Pricer:
    """The two pricing steps of a placement, around the stock reservation: `quote` before
    (a refused quote must not reserve anything), `price` after (the catalog prices are
    known). `rates` and `quotes` are the ports of services/order/ports.py."""

    def __init__(self, rates: Rates, quotes: Quotes, default_shipping: Decimal) -> None:
        self.rates = rates
        self.quotes = quotes
        # In the catalog's currency, whichever it is (known once the stock is reserved).
        self.default_shipping_nanos = int(default_shipping.scaleb(9))

    async def quote(self, order: Order, now: dt.datetime) -> ShippingQuote | None:
        """The order's quote, checked; None when it names none or shipping is down."""
        if order.requested_quote_id is None:
            return None
        try:
            quote = await self.quotes.get_quote(order.requested_quote_id)
        except ShippingUnavailableError:
            return None
        if quote is None:
            raise UnknownQuoteError(order.requested_quote_id)
        check_quote(quote, order, now)
        return quote

    async def price(
        self, order: Order, unit_prices: list[Money], quote: ShippingQuote | None
    ) -> Pricing:
        """Convert the reserved unit prices (and the default shipping, without a quote)."""
        base = unit_prices[0].currency_code
        currency = order.requested_currency or base
        default = Money.from_nanos(base, self.default_shipping_nanos)
        if quote and quote.price.currency_code != currency:
            raise QuoteMismatchError(
                f"the quote is in {quote.price.currency_code}, the order in {currency}"
            )
        if currency == base:
            shipping = quote.price if quote else default
            return Pricing(base, 0, tuple(unit_prices), shipping, quote.id if quote else "")
        amounts = [*unit_prices, *([] if quote else [default])]
        version = quote.rate_version if quote else 0
        try:
            converted, version = await self.rates.convert(amounts, currency, version)
        except CurrencyUnavailableError:
            # Placed in the catalog's currency (the order says so) rather than not at all.
            return Pricing(base, 0, tuple(unit_prices), default)
        if quote:
            return Pricing(currency, version, tuple(converted), quote.price, quote.id)
        return Pricing(currency, version, tuple(converted[:-1]), converted[-1])
