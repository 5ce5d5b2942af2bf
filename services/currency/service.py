"""Currency use cases: the rates in effect, conversion, publication. Stdlib, domain, ports.

Versions never change once stored, so a version's table is cached for the process's life;
only "which version is in effect now" is asked of the store per call.
"""

from __future__ import annotations

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
    def __init__(self, uow: Callable[[], RateUnitOfWork]) -> None:
        self.uow = uow
        self._versions: dict[int, RateVersion] = {}

    async def table(self, version: int = 0) -> RateVersion:
        """Version `version`'s rates, or the version in effect now for 0."""
        if version and version in self._versions:
            return self._versions[version]
        async with self.uow().read() as repo:
            if not version:
                version = await repo.current_version() or 0
                if not version:
                    raise NoRatesError()
                if version in self._versions:
                    return self._versions[version]
            table = await repo.get(version)
        if table is None:
            raise NoRatesError(version)
        self._versions[version] = table
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
