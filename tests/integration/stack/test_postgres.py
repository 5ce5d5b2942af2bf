"""PostgreSQL primary + streaming replica started by the stack runner."""

import asyncio
import time
import uuid

import asyncpg
import pytest

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def pg(stack):
    return stack.require("postgres")


async def test_row_written_on_primary_is_readable_on_replica_within_1s(pg):
    primary = await asyncpg.connect(pg.pg_dsn("product"))
    replica = await asyncpg.connect(pg.pg_dsn("product", replica=True))
    try:
        await primary.execute("CREATE TABLE IF NOT EXISTS stack_probe (id text PRIMARY KEY)")
        key = uuid.uuid4().hex
        await primary.execute("INSERT INTO stack_probe VALUES ($1)", key)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            try:
                if await replica.fetchval("SELECT 1 FROM stack_probe WHERE id = $1", key):
                    break
            except asyncpg.UndefinedTableError:
                pass  # the CREATE TABLE itself has not been replayed yet
            await asyncio.sleep(0.01)
        else:
            pytest.fail("row not visible on the replica within 1 s")
        assert await replica.fetchval("SELECT pg_is_in_recovery()") is True
    finally:
        await primary.close()
        await replica.close()


async def test_replica_refuses_writes(pg):
    replica = await asyncpg.connect(pg.pg_dsn("product", replica=True))
    try:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await replica.execute("CREATE TABLE stack_refused (id int)")
    finally:
        await replica.close()


async def test_replication_is_async_through_a_physical_slot(pg):
    admin = await asyncpg.connect(pg.pg_admin_dsn())
    try:
        row = await admin.fetchrow(
            "SELECT r.state, r.sync_state, s.slot_type, s.active FROM pg_stat_replication r "
            "JOIN pg_replication_slots s ON s.active_pid = r.pid"
        )
        assert row is not None, "no standby streaming through a replication slot"
        assert (row["state"], row["sync_state"], row["slot_type"], row["active"]) == (
            "streaming",
            "async",
            "physical",
            True,
        )
        assert await admin.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await admin.close()


async def test_service_databases_exist_and_belong_to_app_role(pg):
    admin = await asyncpg.connect(pg.pg_admin_dsn())
    try:
        rows = await admin.fetch(
            "SELECT datname, pg_get_userbyid(datdba) AS owner FROM pg_database "
            "WHERE datname = ANY($1::text[])",
            ["product", "user", "notification", "registry", "auth"],
        )
    finally:
        await admin.close()
    assert {r["datname"]: r["owner"] for r in rows} == dict.fromkeys(
        ["product", "user", "notification", "registry", "auth"], "shopmesh"
    )
