"""Auth service entry point: `python -m services.auth.main [migrate]`. Wiring only."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from services.auth.clients import GrpcUsers
from services.auth.config import AuthServiceConfig
from services.auth.domain import ThrottlePolicy
from services.auth.handlers import AuthHandlers
from services.auth.keys import KeyRing, parse_kek
from services.auth.repository import PgStore, sync_keys
from services.auth.service import AuthService, TokenSettings, utcnow
from services.auth.service_keys import ServiceKeys
from services.runtime.auth import ServiceIdentity
from services.runtime.db import Database
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import per_process, run, serve

MIGRATIONS = Path(__file__).parent / "migrations"


class Keys:
    """Resource: load (or create) the signing keys before the first call (each worker
    process keeps its own key ring)."""

    def __init__(self, db: Database, ring: KeyRing, check_s: float) -> None:
        self.db, self.ring, self.check_s = db, ring, check_s

    async def open(self) -> None:
        await sync_keys(self.db, self.ring)

    async def close(self) -> None:
        return None

    async def rotate(self) -> None:
        """Task: reload keys (other instances may have rotated) and rotate when due."""
        while True:
            await asyncio.sleep(self.check_s)
            await sync_keys(self.db, self.ring)


def build(cfg: AuthServiceConfig, metrics: Metrics) -> tuple[AuthHandlers, list, Keys]:
    db = Database(cfg.db, metrics, "auth")
    ring = KeyRing(
        parse_kek(cfg.key_encryption_key),
        cfg.access_ttl_s,
        cfg.key_rotate_hours * 3600,
        cfg.key_prepublish_s,
        utcnow,
    )
    identity = ServiceIdentity.from_env(cfg.server.name)  # AUTH_IDENTITY_KEY
    users = GrpcUsers(cfg.user_addr, identity)

    def policy(max_attempts: int, free_failures: int) -> ThrottlePolicy:
        return ThrottlePolicy(
            max_attempts, free_failures, cfg.throttle_window_s, cfg.lock_base_s, cfg.lock_max_s
        )

    service = AuthService(
        users,
        PgStore(db),
        ring,
        TokenSettings(
            cfg.jwt.jwt_issuer,
            cfg.jwt.jwt_audience,
            cfg.access_ttl_s,
            cfg.refresh_ttl_s,
            cfg.refresh_reuse_grace_s,
        ),
        policy(cfg.account_max_attempts, cfg.account_free_failures),
        policy(cfg.address_max_attempts, cfg.address_free_failures),
    )
    keys = Keys(db, ring, cfg.key_check_s)
    handlers = AuthHandlers(service, cfg.trusted_proxy_hops, ServiceKeys(cfg.service_keys()))
    return handlers, [db, keys, users], keys


async def main() -> int:
    cfg = AuthServiceConfig.from_env()
    metrics = Metrics("auth")
    handlers, resources, keys = build(cfg, metrics)
    # Once, before serving (and before any worker process starts).
    await keys.db.open()
    await migrate(keys.db.primary, MIGRATIONS)
    await keys.db.close()
    if sys.argv[1:] == ["migrate"]:  # Kubernetes' init container
        return 0
    # Every worker reloads the keys (another instance or worker may have rotated them).
    return await serve(
        cfg.server, [handlers], resources, [per_process(keys.rotate)], metrics=metrics
    )


if __name__ == "__main__":
    run(main)
