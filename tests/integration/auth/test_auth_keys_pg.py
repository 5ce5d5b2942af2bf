"""Signing keys in real PostgreSQL (services/auth/repository.py: sync_keys over KeyRing), in a
private database so the running auth service never sees these keys.

A restart is a new KeyRing over a new connection pool to the same database: it must sign
with the same kid (tokens issued before the restart keep verifying), not mint a key of its
own. A rotation stores the new key ahead of use; the old public key stays in the JWKS of
every instance, restarted or not, until the last token it signed has expired.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy import text

from services.auth.config import AuthServiceConfig
from services.auth.keys import KeyRing
from services.auth.main import MIGRATIONS
from services.auth.repository import sync_keys
from services.runtime.auth import CLOCK_SKEW_S, TokenError, public_key_from_jwk, verify
from services.runtime.db import Database, DatabaseConfig
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from tests.unit.auth.fakes import Clock

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

KEK = b"integration-test-key-encryption!"
HOUR = 3600
ACCESS_TTL_S, ROTATE_S, PREPUBLISH_S = 900, 24 * HOUR, 300
ISS, AUD = "https://auth.test", "shop"


@pytest.fixture
async def db_config(stack) -> AsyncIterator[DatabaseConfig]:
    stack.require("postgres-primary")
    name = f"auth_keys_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(stack.pg_admin_dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER shopmesh')
    finally:
        await admin.close()
    cfg = AuthServiceConfig.from_env({"AUTH_DB_NAME": name}).db
    try:
        async with opened(cfg) as db:
            await migrate(db.primary, MIGRATIONS)
        yield cfg
    finally:
        admin = await asyncpg.connect(stack.pg_admin_dsn())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def opened(cfg: DatabaseConfig) -> AsyncIterator[Database]:
    """One "process": its own pool over the database."""
    db = Database(cfg, Metrics("auth-keys-test"), service="auth-keys-test")
    await db.open()
    try:
        yield db
    finally:
        await db.close()


def new_ring(clock: Clock, kek: bytes = KEK) -> KeyRing:
    return KeyRing(kek, ACCESS_TTL_S, ROTATE_S, PREPUBLISH_S, clock)


async def stored(cfg: DatabaseConfig) -> list[tuple[str, object, bytes]]:
    async with opened(cfg) as db, db.unit_of_work().write() as conn:
        rows = await conn.execute(text("SELECT kid, activate_at, sealed FROM signing_keys"))
        return sorted((r[0], r[1], bytes(r[2])) for r in rows)


def token(ring: KeyRing, clock: Clock) -> str:
    now = int(clock().timestamp())
    claims = {"iss": ISS, "aud": AUD, "sub": "u-1", "iat": now, "exp": now + ACCESS_TTL_S}
    return ring.sign(claims)


def verifies(tok: str, ring: KeyRing, clock: Clock) -> bool:
    """Does `tok` verify against the JWKS `ring` publishes now (what Envoy and services
    fetch)?"""
    keys = {jwk["kid"]: public_key_from_jwk(jwk) for jwk in ring.jwks()}
    try:
        verify(tok, keys, issuer=ISS, audience=AUD, now=clock().timestamp())
    except TokenError:
        return False
    return True


async def test_a_restart_keeps_the_persisted_key_and_its_kid(db_config) -> None:
    clock = Clock()
    async with opened(db_config) as db:
        first = new_ring(clock)
        await sync_keys(db, first)
        kid = first.current().kid
        before = token(first, clock)
    rows = await stored(db_config)
    assert [r[0] for r in rows] == [kid]
    # Sealed at rest: the row holds neither the raw private key nor anything usable alone.
    raw = first.current().private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    assert raw not in rows[0][2]

    clock.advance(60)  # the "process" comes back a minute later
    async with opened(db_config) as db:
        again = new_ring(clock)
        await sync_keys(db, again)
        await sync_keys(db, again)  # the periodic reload adds nothing either
    assert again.current().kid == kid
    assert [r[0] for r in await stored(db_config)] == [kid]
    assert verifies(before, again, clock), "a token from before the restart must still verify"
    after = token(again, clock)
    assert verifies(after, first, clock)  # and the old instance accepts the new one's tokens


async def test_a_wrong_key_encryption_key_stops_startup_instead_of_minting_a_new_key(
    db_config,
) -> None:
    clock = Clock()
    async with opened(db_config) as db:
        await sync_keys(db, new_ring(clock))
        with pytest.raises(InvalidTag):
            await sync_keys(db, new_ring(clock, kek=b"x" * 32))
    assert len(await stored(db_config)) == 1


async def test_rotation_stores_the_new_key_and_keeps_the_old_one_published_until_expiry(
    db_config,
) -> None:
    clock = Clock()
    async with opened(db_config) as db:
        ring = new_ring(clock)
        await sync_keys(db, ring)
        old = ring.current().kid

        clock.advance(ROTATE_S - PREPUBLISH_S)  # due: stored now, signs in PREPUBLISH_S
        await sync_keys(db, ring)
    rows = await stored(db_config)
    assert len(rows) == 2
    (new, activate_at, _) = next(r for r in rows if r[0] != old)
    assert activate_at == clock() + timedelta(seconds=PREPUBLISH_S)

    async def restarted() -> KeyRing:
        async with opened(db_config) as db:
            r = new_ring(clock)
            await sync_keys(db, r)
            return r

    # Published ahead, by this instance and by one that restarts now; still signing old.
    fresh = await restarted()
    for r in (ring, fresh):
        assert {k["kid"] for k in r.jwks()} == {old, new}
        assert r.current().kid == old

    clock.advance(PREPUBLISH_S - 1)
    last_old = token(ring, clock)  # the last token the old key signs
    clock.advance(1)
    assert ring.current().kid == new and (await restarted()).current().kid == new
    first_new = token(ring, clock)
    assert verifies(first_new, fresh, clock)

    # The old key stays published while its last token is accepted anywhere (its exp plus
    # the verifiers' clock-skew leeway), on a restarted instance too; not a second longer.
    clock.advance(ACCESS_TTL_S + CLOCK_SKEW_S - 1)  # last_old's final accepted second
    fresh = await restarted()
    assert old in {k["kid"] for k in fresh.jwks()}
    assert verifies(last_old, fresh, clock)
    clock.advance(1)
    fresh = await restarted()
    assert {k["kid"] for k in fresh.jwks()} == {new}
    assert verifies(first_new, fresh, clock)
    assert {r[0] for r in await stored(db_config)} == {old, new}  # no third key yet


async def test_instances_rotating_together_store_one_new_key(db_config) -> None:
    clock = Clock()
    async with opened(db_config) as db:
        await sync_keys(db, new_ring(clock))
    clock.advance(ROTATE_S - PREPUBLISH_S)
    rings = [new_ring(clock) for _ in range(4)]

    async def sync(r: KeyRing) -> None:
        async with opened(db_config) as db:
            await sync_keys(db, r)

    t0 = time.monotonic()
    await asyncio.gather(*(sync(r) for r in rings))
    assert time.monotonic() - t0 < 60
    assert len(await stored(db_config)) == 2  # the advisory lock: one new key, not four
    assert len({tuple(k["kid"] for k in r.jwks()) for r in rings}) == 1
