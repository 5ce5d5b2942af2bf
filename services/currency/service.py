"""Currency use cases: the rates in effect, conversion, publication. Stdlib, domain, ports.

Versions never change once stored, so a version's table is cached for the process's life.
Which version is in effect now is asked of the store at most once per `current_ttl_s`
(CURRENCY_CURRENT_TTL_S, 1 s): a version takes effect in this process up to that long after
its effective time. 0 asks on every call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.currency.domain import (
    Conversion,
    Money,
    NoRatesError,
    PublishRates,
    RateVersion,
    convert_all,
    validate_rates,
)
from services.currency.ports import RateUnitOfWork
from services.runtime.errors import InvalidArgument


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

    async def table(self, version: int = 0) -> RateVersion:
        """Version `version`'s rates, or the version in effect now for 0."""
        if not version and self._current is not None:
            asked, current = self._current
            if self.clock() - asked < self.current_ttl_s:
                version = current
        if version in self._versions:
            return self._versions[version]
        asking_current = not version
        async with self.uow().read() as repo:
            if asking_current:
                version = await repo.current_version() or 0
                if not version:
                    raise NoRatesError()
            table = self._versions.get(version) or await repo.get(version)
        if table is None:
            raise NoRatesError(version)
        self._versions[version] = table
        if asking_current:
            self._current = (self.clock(), version)
        return table

    async def convert(self, amounts: tuple[Money, ...], to: str, version: int = 0) -> Conversion:
        if version < 0:
            raise InvalidArgument("rate_version", "must be 0 (now) or a published version")
        return convert_all(amounts, to, await self.table(version))

    async def publish(self, cmd: PublishRates) -> RateVersion:
        rates = validate_rates(cmd.rates)
        async with self.uow().write() as repo:
            version = await repo.add(rates, cmd.effective_at)
            table = await repo.get(version)
        assert table is not None
        return table
