"""What the shipping use cases need from outside. Stdlib + domain only."""

from __future__ import annotations

import datetime as dt
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from services.shipping.domain import Money, Quote


class QuoteRepository(Protocol):
    async def add(self, quote: Quote) -> None: ...

    async def get(self, quote_id: str) -> Quote | None: ...

    async def delete_expired(self, before: dt.datetime, limit: int) -> int:
        """Delete up to `limit` quotes that expired before `before`; returns how many."""
        ...


class QuoteUnitOfWork(Protocol):
    def write(self) -> AbstractAsyncContextManager[QuoteRepository]: ...

    def read(self) -> AbstractAsyncContextManager[QuoteRepository]: ...


class Converter(Protocol):
    async def convert(self, amount: Money, currency_code: str) -> tuple[Money, int]:
        """`amount` in `currency_code` with the rates in effect, and their version. Raises
        InvalidArgument("currency_code") for a currency without a rate,
        CurrencyUnavailableError when the currency service cannot answer."""
        ...
