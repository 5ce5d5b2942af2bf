"""What the currency use cases need from storage. Stdlib + domain only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Protocol

from services.currency.domain import RateVersion


class RateRepository(Protocol):
    async def current_version(self) -> int | None:
        """The version in effect now: the newest effective time not in the future."""
        ...

    async def get(self, version: int) -> RateVersion | None: ...

    async def add(self, rates: Mapping[str, Decimal], effective_at: dt.datetime | None) -> int:
        """Store a new version (effective now when None); returns its number."""
        ...


class RateUnitOfWork(Protocol):
    def write(self) -> AbstractAsyncContextManager[RateRepository]: ...

    def read(self) -> AbstractAsyncContextManager[RateRepository]: ...
