"""The read/write router against the real PostgreSQL primary and streaming replica."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import text

from services.runtime import context
from services.runtime.db import Database, DatabaseConfig
from services.runtime.metrics import Metrics

pytestmark = pytest.mark.stack

DB = "product"  # any app database works; the test keeps to its own schema
SCHEMA = "runtime_router_test"


@pytest.fixture(scope="module")
async def db(stack):
    stack.require("postgres-primary", "postgres-replica")
    cfg = DatabaseConfig.from_env("RT_TEST_DB", {}, name=DB, replica_wait_ms=200)
    database = Database(cfg, Metrics("rt-db-test"), service="rt-db-test")
    await database.open()
    async with database.unit_of_work().write() as conn:
        await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        await conn.execute(
            text(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.kv (k text PRIMARY KEY, v int NOT NULL)")
        )
    await database.check_replica()
    yield database
    await database.close()


def reads(database: Database, target: str, reason: str) -> float:
    return database.metrics.db_reads.labels(target, reason)._value.get()


async def test_reads_are_served_by_the_replica(db):
    before = reads(db, "replica", "replica")
    async with db.unit_of_work().read() as conn:
        in_recovery = (await conn.execute(text("SELECT pg_is_in_recovery()"))).scalar_one()
        app = (await conn.execute(text("SELECT current_setting('application_name')"))).scalar()
    assert in_recovery is True
    assert app == "rt-db-test:replica"
    assert reads(db, "replica", "replica") == before + 1


async def test_writes_never_go_to_the_replica(db):
    async with db.unit_of_work().write() as conn:
        assert (await conn.execute(text("SELECT pg_is_in_recovery()"))).scalar_one() is False


async def test_write_rolls_back_on_error(db):
    key = uuid.uuid4().hex
    uow = db.unit_of_work()
    with pytest.raises(RuntimeError):
        async with uow.write() as conn:
            await conn.execute(text(f"INSERT INTO {SCHEMA}.kv VALUES (:k, 1)"), {"k": key})
            raise RuntimeError("abort")
    async with db.unit_of_work().read() as conn:
        row = await conn.execute(text(f"SELECT v FROM {SCHEMA}.kv WHERE k = :k"), {"k": key})
        assert row.first() is None


async def test_write_raw_without_a_transaction_commits_each_statement_and_keeps_the_lsn(db):
    key = uuid.uuid4().hex
    uow = db.unit_of_work()
    with pytest.raises(RuntimeError):
        async with uow.write_raw(transaction=False) as conn:
            await conn.execute(f"INSERT INTO {SCHEMA}.kv (k, v) VALUES ($1, 1)", key)
            raise RuntimeError("after the statement")
    assert uow.last_lsn == 0  # not read after an exception
    async with db.primary.connect() as conn:  # no transaction rolled the insert back
        got = await conn.execute(text(f"SELECT v FROM {SCHEMA}.kv WHERE k = :k"), {"k": key})
        assert got.scalar_one() == 1
    async with uow.write_raw(transaction=False) as conn:
        await conn.execute(f"UPDATE {SCHEMA}.kv SET v = 2 WHERE k = $1", key)
        assert not conn.is_in_transaction()
    assert uow.last_lsn > 0
    rows, _ = await uow.fetch(f"SELECT v FROM {SCHEMA}.kv WHERE k = $1", key)
    assert rows[0][0] == 2  # read-your-writes from the kept LSN


async def test_write_raw_gives_the_connection_back_after_the_callers_own_error(db):
    """A domain rule refusing a change inside write_raw (raised between statements) rolls
    the transaction back and returns the connection to the pool: the next write gets the
    same session, no new connection is opened. A cancelled block still drops its own."""
    key = uuid.uuid4().hex
    uow = db.unit_of_work()
    async with uow.write_raw() as conn:
        pid = conn.get_server_pid()
    opened = db._raw_writes.open_connections
    with pytest.raises(ValueError):
        async with uow.write_raw() as conn:
            assert conn.get_server_pid() == pid
            await conn.execute(f"INSERT INTO {SCHEMA}.kv (k, v) VALUES ($1, 1)", key)
            raise ValueError("too many lines")
    async with uow.write_raw() as conn:
        assert conn.get_server_pid() == pid  # the same session, back in the pool
        assert await conn.fetchval(f"SELECT v FROM {SCHEMA}.kv WHERE k = $1", key) is None
    assert db._raw_writes.open_connections == opened

    async def cancelled() -> None:
        async with uow.write_raw() as conn:
            await conn.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(cancelled())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with uow.write_raw() as conn:
        assert conn.get_server_pid() != pid  # the cancelled one was dropped, not reused


async def test_read_your_writes_right_after_each_update(db):
    key = uuid.uuid4().hex
    for value in range(20):
        uow = db.unit_of_work()
        async with uow.write() as conn:
            await conn.execute(
                text(
                    f"INSERT INTO {SCHEMA}.kv VALUES (:k, :v) "
                    "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
                ),
                {"k": key, "v": value},
            )
        assert uow.last_lsn > 0
        async with uow.read() as conn:
            got = (
                await conn.execute(text(f"SELECT v FROM {SCHEMA}.kv WHERE k = :k"), {"k": key})
            ).scalar_one()
        assert got == value


async def test_caller_lsn_from_request_context_is_honoured(db, stack):
    """A new unit of work (next request) reads its caller's write even with replay paused."""
    key = uuid.uuid4().hex
    writer = db.unit_of_work()
    admin = await asyncpg.connect(stack.pg_admin_dsn(DB, replica=True))
    try:
        await admin.execute("SELECT pg_wal_replay_pause()")
        async with writer.write() as conn:
            await conn.execute(text(f"INSERT INTO {SCHEMA}.kv VALUES (:k, 7)"), {"k": key})
        behind = reads(db, "primary", "replica_behind")
        ctx = context.RequestContext(min_lsn=writer.last_lsn)

        async def next_request() -> int | None:
            context.bind(ctx)
            async with db.unit_of_work().read() as conn:
                row = await conn.execute(
                    text(f"SELECT v FROM {SCHEMA}.kv WHERE k = :k"), {"k": key}
                )
                return row.scalar()

        assert await asyncio.create_task(next_request()) == 7
        assert reads(db, "primary", "replica_behind") == behind + 1
        # Without the LSN the replica answers (stale: that is what the LSN is for).
        async with db.unit_of_work().read() as conn:
            row = await conn.execute(text(f"SELECT v FROM {SCHEMA}.kv WHERE k = :k"), {"k": key})
            assert row.scalar() is None
    finally:
        await admin.execute("SELECT pg_wal_replay_resume()")
        await admin.close()


async def test_reads_keep_working_with_the_replica_stopped(db, stack):
    key = uuid.uuid4().hex
    async with db.unit_of_work().write() as conn:
        await conn.execute(text(f"INSERT INTO {SCHEMA}.kv VALUES (:k, 3)"), {"k": key})
    stack.stop("postgres-replica")
    try:
        fallback = sum(
            reads(db, "primary", r) for r in ("replica_error", "replica_down", "replica_behind")
        )
        for _ in range(5):
            async with db.unit_of_work().read() as conn:
                row = await conn.execute(
                    text(f"SELECT v, pg_is_in_recovery() FROM {SCHEMA}.kv WHERE k = :k"),
                    {"k": key},
                )
                assert tuple(row.one()) == (3, False)
        after = sum(
            reads(db, "primary", r) for r in ("replica_error", "replica_down", "replica_behind")
        )
        assert after == fallback + 5
        assert await db.check_replica() is False
    finally:
        stack.start("postgres-replica")
    assert await db.check_replica() is True
    async with db.unit_of_work().read() as conn:
        assert (await conn.execute(text("SELECT pg_is_in_recovery()"))).scalar_one() is True


async def test_single_statement_reads_survive_the_replica_stopping(db, stack):
    """Single-statement replica reads skip BEGIN/COMMIT and the pool ping; a lost pooled
    connection must still not fail the read (it is re-run on the primary)."""
    key = uuid.uuid4().hex
    async with db.unit_of_work().write() as conn:
        await conn.execute(text(f"INSERT INTO {SCHEMA}.kv VALUES (:k, 4)"), {"k": key})
    await db.check_replica()
    async with db.unit_of_work().read(single_statement=True) as conn:
        assert (await conn.execute(text("SELECT pg_is_in_recovery()"))).scalar_one() is True
    stack.stop("postgres-replica")
    try:
        for _ in range(5):
            async with db.unit_of_work().read(single_statement=True) as conn:
                row = await conn.execute(
                    text(f"SELECT v, pg_is_in_recovery() FROM {SCHEMA}.kv WHERE k = :k"),
                    {"k": key},
                )
                assert tuple(row.one()) == (4, False)
    finally:
        stack.start("postgres-replica")
    assert await db.check_replica() is True


async def test_replica_lagging_beyond_the_bound_reads_the_primary_counted_and_logged(
    db, stack, caplog
):
    """Real lag: replay paused on the replica while the primary writes. With a 1-byte bound
    the next read must go to the primary, counted as replica_lagging, with one log line."""
    cfg = DatabaseConfig.from_env("RT_TEST_DB", {}, name=DB, replica_max_lag_bytes=1)
    lagging = Database(cfg, Metrics("rt-db-lag"), service="rt-db-lag")
    await lagging.open()
    key = uuid.uuid4().hex
    admin = await asyncpg.connect(stack.pg_admin_dsn(DB, replica=True))
    try:
        assert await lagging.check_replica() is True
        await admin.execute("SELECT pg_wal_replay_pause()")
        async with lagging.unit_of_work().write() as conn:
            await conn.execute(text(f"INSERT INTO {SCHEMA}.kv VALUES (:k, 9)"), {"k": key})
        assert await lagging.check_replica() is True  # still up: lagging, not down
        assert lagging.replica_lag_bytes > 1
        before = reads(lagging, "primary", "replica_lagging")
        caplog.set_level("INFO", logger="services.runtime.db")
        for _ in range(3):  # a fresh unit of work, no LSN to wait for: only the lag moves it
            async with lagging.unit_of_work().read() as conn:
                row = await conn.execute(
                    text(f"SELECT v, pg_is_in_recovery() FROM {SCHEMA}.kv WHERE k = :k"),
                    {"k": key},
                )
                assert tuple(row.one()) == (9, False)
        assert reads(lagging, "primary", "replica_lagging") == before + 3
        lines = [
            r for r in caplog.records if r.getMessage() == "replica lagging, reads use primary"
        ]
        assert len(lines) == 1, "logged once when reads move, not once per read"
        fields = lines[0].fields
        assert fields["database"] == DB and fields["max_lag_bytes"] == 1
        assert fields["lag_bytes"] == lagging.replica_lag_bytes
    finally:
        await admin.execute("SELECT pg_wal_replay_resume()")
        await admin.close()
        await lagging.close()


# ------------------------------------------------------------------ raw hot-path reads (fetch)


async def test_fetch_reads_the_replica_and_reports_an_lsn_it_includes(db):
    key = uuid.uuid4().hex
    uow = db.unit_of_work()
    async with uow.write() as conn:
        await conn.execute(text(f"INSERT INTO {SCHEMA}.kv VALUES (:k, 5)"), {"k": key})
    before = reads(db, "replica", "replica") + reads(db, "replica", "replica_caught_up")
    rows, seen = await uow.fetch(
        f"SELECT v, pg_is_in_recovery(), current_setting('application_name') "
        f"FROM {SCHEMA}.kv WHERE k = $1",
        key,
    )
    assert tuple(rows[0]) == (5, True, "rt-db-test:replica")
    assert rows[0]["v"] == 5  # by name too
    assert seen >= uow.last_lsn  # read-your-writes: it waited for its own commit
    after = reads(db, "replica", "replica") + reads(db, "replica", "replica_caught_up")
    assert after == before + 1


async def test_fetch_honours_the_caller_lsn_with_replay_paused(db, stack):
    """The same rule as read(): the caller's LSN (request context) sends the statement to
    the primary when the replica has not replayed it; the LSN reported is never the
    caller's own number but one the primary is known to have."""
    key = uuid.uuid4().hex
    writer = db.unit_of_work()
    admin = await asyncpg.connect(stack.pg_admin_dsn(DB, replica=True))
    try:
        await admin.execute("SELECT pg_wal_replay_pause()")
        async with writer.write() as conn:
            await conn.execute(text(f"INSERT INTO {SCHEMA}.kv VALUES (:k, 8)"), {"k": key})
        behind = reads(db, "primary", "replica_behind")
        query = f"SELECT v, pg_is_in_recovery() FROM {SCHEMA}.kv WHERE k = $1"

        async def next_request() -> tuple[list, int]:
            context.bind(context.RequestContext(min_lsn=writer.last_lsn))
            return await db.unit_of_work().fetch(query, key)

        rows, seen = await asyncio.create_task(next_request())
        assert tuple(rows[0]) == (8, False)
        assert reads(db, "primary", "replica_behind") == behind + 1
        assert seen < writer.last_lsn  # the replica's position, not the caller's claim
        rows, _ = await db.unit_of_work().fetch(query, key)  # no LSN: the replica, stale
        assert rows == []
    finally:
        await admin.execute("SELECT pg_wal_replay_resume()")
        await admin.close()


async def test_fetch_sql_errors_are_raised_not_retried(db):
    with pytest.raises(asyncpg.UndefinedTableError):
        await db.unit_of_work().fetch(f"SELECT v FROM {SCHEMA}.no_such_table")
    assert db.replica_ok  # the statement's own error says nothing about the replica
    rows, _ = await db.unit_of_work().fetch("SELECT 1")
    assert rows[0][0] == 1


async def test_fetch_survives_killed_replica_connections(db, stack):
    """An idle pooled replica connection whose backend is gone is noticed for free at
    checkout (still the replica); one lost mid-statement re-runs it on the primary, whose
    read connections refuse writes. Nothing is stopped: other tests share the replica."""
    key = uuid.uuid4().hex
    async with db.unit_of_work().write() as conn:
        await conn.execute(text(f"INSERT INTO {SCHEMA}.kv VALUES (:k, 6)"), {"k": key})
    query = f"SELECT v, pg_is_in_recovery() FROM {SCHEMA}.kv WHERE k = $1"
    await db.check_replica()
    await db.unit_of_work().fetch("SELECT 1")  # a pooled replica connection exists
    admin = await asyncpg.connect(stack.pg_admin_dsn(DB, replica=True))
    kill = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = 'rt-db-test:replica' AND query LIKE $1"
    )
    try:
        assert await admin.fetchval(kill, "%") >= 1
        await asyncio.sleep(0.1)
        rows, _ = await db.unit_of_work().fetch(query, key)
        assert tuple(rows[0]) == (6, True)

        lost = reads(db, "primary", "replica_error")
        slow = f"SELECT v, pg_is_in_recovery() FROM {SCHEMA}.kv, pg_sleep(0.5) WHERE k = $1"
        running = asyncio.create_task(db.unit_of_work().fetch(slow, key))
        for _ in range(50):
            await asyncio.sleep(0.02)
            if await admin.fetchval(kill, "%pg_sleep%"):
                break
        rows, _ = await running
        assert tuple(rows[0]) == (6, False)
        assert reads(db, "primary", "replica_error") == lost + 1
    finally:
        await admin.close()
    assert await db.check_replica() is True

    async def far_future() -> None:
        context.bind(context.RequestContext(min_lsn=0xFFFFFFFF << 32))
        await db.unit_of_work().fetch(f"INSERT INTO {SCHEMA}.kv VALUES ('x', 1)")

    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await asyncio.create_task(far_future())
