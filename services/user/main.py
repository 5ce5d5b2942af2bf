"""User service: `python -m services.user.main [migrate]`."""

from __future__ import annotations

import sys
from pathlib import Path

from services.runtime.db import Database
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import run, serve
from services.user.config import UserConfig
from services.user.handlers import UserHandlers
from services.user.metrics import UserOutboxMetrics
from services.user.outbox import run_relay
from services.user.passwords import Argon2Hasher
from services.user.repository import SqlUserUnitOfWork

MIGRATIONS = Path(__file__).parent / "migrations"


async def main() -> int:
    config = UserConfig.from_env()
    metrics = Metrics("user")
    db = Database(config.db, metrics, service="user")
    if sys.argv[1:] == ["migrate"] or config.options.migrate_on_start:
        await db.open()
        await migrate(db.primary, MIGRATIONS)
        await db.close()
        if sys.argv[1:] == ["migrate"]:
            return 0
    handlers = UserHandlers(lambda: SqlUserUnitOfWork(db.unit_of_work()), Argon2Hasher())
    outbox_metrics = UserOutboxMetrics(metrics.registry)
    relay = (
        [lambda: run_relay(db, config.kafka, metrics=metrics, outbox_metrics=outbox_metrics)]
        if config.options.outbox_relay
        else []
    )
    return await serve(config.server, [handlers], [db], relay, metrics=metrics)


if __name__ == "__main__":
    run(main)
