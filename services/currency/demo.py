"""Demo rates: `python -m services.currency.demo` publishes version 1 (USD, EUR, GBP, JPY,
CAD, CHF; effective 2026-01-01) when no version exists yet, so it is safe to run on every
`stack up` and never overwrites rates published since. Runs the migrations first."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

from services.currency.config import CurrencyConfig
from services.currency.domain import validate_rates
from services.currency.main import MIGRATIONS
from services.currency.repository import SqlRateRepository
from services.runtime.db import Database
from services.runtime.migrations import migrated_database

# Units per 1 USD: fixed demo figures, not market data.
DEMO_RATES: tuple[tuple[str, Decimal], ...] = (
    ("EUR", Decimal("0.92")),
    ("GBP", Decimal("0.79")),
    ("JPY", Decimal("149.5")),
    ("CAD", Decimal("1.36")),
    ("CHF", Decimal("0.88")),
)
DEMO_EFFECTIVE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def load(db: Database) -> int:
    """Publish the demo version if there is none; returns the version in effect."""
    async with db.unit_of_work().write() as conn:
        repo = SqlRateRepository(conn)
        # One loader at a time (a test and `stack up` may run it together).
        await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('currency-demo'))")
        current = await repo.current_version()
        if current is None:
            current = await repo.add(validate_rates(DEMO_RATES), DEMO_EFFECTIVE)
    return current


async def main() -> None:
    config = CurrencyConfig.from_env()
    async with migrated_database(config.db, "currency-demo", MIGRATIONS) as db:
        version = await load(db)
    print(f"currency demo data: rate version {version} in effect")


if __name__ == "__main__":
    asyncio.run(main())
