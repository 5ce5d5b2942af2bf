"""PostgreSQL adapters of the auth ports (primary only: a refresh must see the latest state,
and every call writes). Explicit row <-> domain mapping, SQL text via SQLAlchemy Core."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.auth.domain import RefreshRecord, ThrottleState
from services.auth.keys import KeyRing, StoredKey
from services.runtime.db import Database

KEYS_LOCK = "shopmesh-auth-keys"


class PgTx:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def refresh_token(self, token_hash: bytes) -> RefreshRecord | None:
        row = (
            await self.conn.execute(
                text(
                    "SELECT t.token_hash, t.family_id, f.user_id, f.roles, t.expires_at, "
                    "t.spent_at, f.revoked_at FROM refresh_tokens t "
                    "JOIN refresh_families f USING (family_id) WHERE t.token_hash = :h "
                    "FOR UPDATE OF t, f"
                ),
                {"h": token_hash},
            )
        ).first()
        if row is None:
            return None
        return RefreshRecord(bytes(row[0]), row[1], row[2], tuple(row[3]), row[4], row[5], row[6])

    async def add_family(
        self, family_id: str, user_id: str, roles: tuple[str, ...], now: datetime
    ) -> None:
        await self.conn.execute(
            text(
                "INSERT INTO refresh_families (family_id, user_id, roles, created_at) "
                "VALUES (:f, :u, :r, :now)"
            ),
            {"f": family_id, "u": user_id, "r": list(roles), "now": now},
        )

    async def add_refresh_token(self, rec: RefreshRecord, now: datetime) -> None:
        await self.conn.execute(
            text(
                "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at) "
                "VALUES (:h, :f, :now, :exp)"
            ),
            {"h": rec.token_hash, "f": rec.family_id, "now": now, "exp": rec.expires_at},
        )

    async def spend(self, token_hash: bytes, now: datetime) -> None:
        await self.conn.execute(
            text("UPDATE refresh_tokens SET spent_at = :now WHERE token_hash = :h"),
            {"h": token_hash, "now": now},
        )

    async def revoke_family(self, family_id: str, now: datetime) -> None:
        await self.conn.execute(
            text(
                "UPDATE refresh_families SET revoked_at = :now "
                "WHERE family_id = :f AND revoked_at IS NULL"
            ),
            {"f": family_id, "now": now},
        )

    async def throttle_state(self, key: str, now: datetime) -> ThrottleState:
        await self.conn.execute(
            text(
                "INSERT INTO login_throttle (key, window_start) VALUES (:k, :now) "
                "ON CONFLICT (key) DO NOTHING"
            ),
            {"k": key, "now": now},
        )
        row = (
            await self.conn.execute(
                text(
                    "SELECT window_start, attempts, failures, last_failure, locked_until "
                    "FROM login_throttle WHERE key = :k FOR UPDATE"
                ),
                {"k": key},
            )
        ).one()
        return ThrottleState(key, *row)

    async def save_throttle(self, s: ThrottleState) -> None:
        await self.conn.execute(
            text(
                "UPDATE login_throttle SET window_start = :ws, attempts = :a, failures = :f, "
                "last_failure = :lf, locked_until = :lu WHERE key = :k"
            ),
            {
                "k": s.key,
                "ws": s.window_start,
                "a": s.attempts,
                "f": s.failures,
                "lf": s.last_failure,
                "lu": s.locked_until,
            },
        )


class PgStore:
    """The Store port over the primary."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTx]:
        async with self.db.unit_of_work().write() as conn:
            yield PgTx(conn)


async def sync_keys(db: Database, ring: KeyRing) -> None:
    """Load the keys, and store a new one when rotation is due. The advisory lock makes
    instances starting or rotating together agree on one new key."""
    async with db.unit_of_work().write() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": KEYS_LOCK})
        ring.load(await _stored(conn))
        new = ring.next_key_due()
        if new is not None:
            await conn.execute(
                text("INSERT INTO signing_keys (kid, activate_at, sealed) VALUES (:k, :a, :s)"),
                {"k": new.kid, "a": new.activate_at, "s": new.sealed},
            )
            ring.load(await _stored(conn))


async def _stored(conn: AsyncConnection) -> list[StoredKey]:
    rows = await conn.execute(text("SELECT kid, activate_at, sealed FROM signing_keys"))
    return [StoredKey(r[0], r[1], bytes(r[2])) for r in rows]
