"""Demo accounts, loaded once (`python -m services.user.demo`, idempotent):

- demo@shopmesh.local / `shopmesh-demo` (customer, id u-demo, with a default address)
- admin@shopmesh.local / `shopmesh-admin` (admin, id u-admin)

Dev-only passwords, documented here and in README; never use them outside SHOPMESH_ENV=dev.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from services.runtime.config import environment
from services.runtime.db import Database
from services.runtime.migrations import migrated_database
from services.user.config import UserConfig
from services.user.domain import AddAddress, Address, Role, User, UserRegistered
from services.user.main import MIGRATIONS
from services.user.passwords import Argon2Hasher
from services.user.repository import SqlUserRepository

DEMO_USERS = [
    ("u-demo", "demo@shopmesh.local", "shopmesh-demo", "Demo Shopper", (Role.CUSTOMER,)),
    (
        "u-admin",
        "admin@shopmesh.local",
        "shopmesh-admin",
        "Shop Admin",
        (Role.CUSTOMER, Role.ADMIN),
    ),
]
DEMO_ADDRESS = Address("Demo Shopper", "1 Market Street", "Berlin", "10115", "DE")


async def load(db: Database) -> int:
    hasher = Argon2Hasher()
    added = 0
    for uid, email, password, name, roles in DEMO_USERS:
        async with db.unit_of_work().write() as conn:
            repo = SqlUserRepository(conn)
            if await repo.get(uid) is not None:
                continue
            now = datetime.now(UTC)
            await repo.add(User(uid, email, name, "", roles, now), await hasher.hash(password))
            await repo.add_event(UserRegistered(uid, email, name, now))
            if uid == "u-demo":
                await repo.add_address("a-demo-home", AddAddress(uid, DEMO_ADDRESS, True))
            added += 1
    return added


async def main() -> None:
    if environment() != "dev":
        raise SystemExit("demo users have well-known passwords: dev only")
    config = UserConfig.from_env()
    async with migrated_database(config.db, "user-demo", MIGRATIONS) as db:
        added = await load(db)
    print(f"user demo data: {added} users added (demo@shopmesh.local, admin@shopmesh.local)")


if __name__ == "__main__":
    asyncio.run(main())
