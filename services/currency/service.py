"""Currency use cases: the rates in effect, conversion, publication. Stdlib, domain, ports.

Versions never change once stored, so a version's table is cached for the process's life,
and so is each conversion computed with it (the storefront converts the same catalog prices
over and over; bounded at CONVERSIONS_KEPT entries, then started afresh). Which version is
in effect now is asked of the store at most once per `current_ttl_s` (CURRENCY_CURRENT_TTL_S,
1 s), by one query however many calls arrive meanwhile: a version takes effect in this
process up to that long after its effective time. 0 asks on every call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from services.currency.domain import (
    Conversion,
    Money,
    NoRatesError,
    PublishRates,
    RateVersion,
    convert,
    validate_rates,
)
from services.currency.ports import RateUnitOfWork
from services.runtime.errors import InvalidArgument
from services.runtime.memo import BoundedMemo

CONVERSIONS_KEPT = 10_000


class CurrencyService:
    def __init__(
        self,
        uow: Callable[[], RateUnitOfWork],
        current_ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.uow = uow
        self.current_ttl_s = current_ttl_s
        self.clock = clock
        self._versions: dict[int, RateVersion] = {}
        self._current: tuple[float, int] | None = None  # (asked at, version)
        self._asking: asyncio.Future[RateVersion] | None = None
        self._converted: BoundedMemo[tuple[str, int, int, str, int], Money] = BoundedMemo(
            CONVERSIONS_KEPT
        )

    async def table(self, version: int = 0) -> RateVersion:
        """Version `version`'s rates, or the version in effect now for 0."""
        if not version:
            if self._current is None or self.clock() - self._current[0] >= self.current_ttl_s:
                return await self._ask_current()
            version = self._current[1]
        if version in self._versions:
            return self._versions[version]
        async with self.uow().read() as repo:
            table = await repo.get(version)
        if table is None:
            raise NoRatesError(version)
        self._versions[version] = table
        return table

    async def _ask_current(self) -> RateVersion:
        """One store query for every call that finds the version in effect too old; the
        calls arriving meanwhile wait for its answer (or its error)."""
        if self._asking is None:
            self._asking = asyncio.ensure_future(self._read_current())
            self._asking.add_done_callback(self._asked)
        return await asyncio.shield(self._asking)

    def _asked(self, done: asyncio.Future[RateVersion]) -> None:
        self._asking = None
        if not done.cancelled():
            done.exception()  # retrieved: each waiter re-raises it

    async def _read_current(self) -> RateVersion:
        asked = self.clock()  # before the query: the answer is at least this fresh
        async with self.uow().read() as repo:
            version = await repo.current_version() or 0
            if not version:
                raise NoRatesError()
            table = self._versions.get(version) or await repo.get(version)
        if table is None:
            raise NoRatesError(version)
        self._versions[version] = table
        self._current = (asked, version)
        return table

    async def convert(self, amounts: Sequence[Money], to: str, version: int = 0) -> Conversion:
        return await self.convert_parts(
            [(a.currency_code, a.units, a.nanos) for a in amounts], to, version
        )

    async def convert_parts(
        self, parts: Sequence[tuple[str, int, int]], to: str, version: int = 0
    ) -> Conversion:
        """Convert amounts given as (currency_code, units, nanos), straight off the wire:
        one seen before with the same target and version is answered from memory without
        being built or checked again (it was checked when first converted)."""
        if version < 0:
            raise InvalidArgument("rate_version", "must be 0 (now) or a published version")
        table = await self.table(version)
        done, v = self._converted, table.version
        out = []
        for i, (code, units, nanos) in enumerate(parts):
            key = (code, units, nanos, to, v)
            got = done.get(key)
            if got is None:
                try:
                    amount = Money(code, units, nanos)
                except ValueError as exc:
                    raise InvalidArgument(f"amounts[{i}]", str(exc)) from None
                got = done.keep(key, convert(amount, to, table, f"amounts[{i}]"))
            out.append(got)
        return Conversion(tuple(out), v)

    async def publish(self, cmd: PublishRates) -> RateVersion:
        rates = validate_rates(cmd.rates)
        async with self.uow().write() as repo:
            version = await repo.add(rates, cmd.effective_at)
            table = await repo.get(version)
        assert table is not None
        return table
