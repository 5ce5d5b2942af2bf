"""ChangeListener (services/runtime/db/listen.py) against the real primary: notices of
committed writes only, the LSN fence after them, and a killed listener connection
(pg_terminate_backend) reported at once, then listening again with a fence that covers
what was committed while it was away."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import text

from services.runtime.db import ChangeListener, Database, DatabaseConfig
from services.runtime.metrics import Metrics

pytestmark = pytest.mark.stack

DB = "product"
SCHEMA = "runtime_router_test"  # shared with test_runtime_db (its own table there)


class Recorder:
    """A ChangeSink that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def changed(self, payload: str) -> None:
        self.events.append(("changed", payload))

    def fenced(self, lsn: int) -> None:
        self.events.append(("fenced", lsn))

    def lost(self) -> None:
        self.events.append(("lost", None))

    def listening(self, lsn: int) -> None:
        self.events.append(("listening", lsn))

    def last(self, kind: str) -> object:
        return next((v for k, v in reversed(self.events) if k == kind), None)

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.events if k == kind)


async def until(predicate, what: str, limit_s: float = 10.0) -> None:
    for _ in range(int(limit_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {limit_s}s: {what}")


@pytest.fixture
async def db(stack):
    stack.require("postgres-primary", "postgres-replica")
    cfg = DatabaseConfig.from_env("RT_TEST_DB", {}, name=DB)
    database = Database(cfg, Metrics("rt-listen-test"), service="rt-listen-test")
    await database.open()
    async with database.unit_of_work().write() as conn:
        await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        await conn.execute(text(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.notes (n text)"))
    yield database
    await database.close()


@pytest.fixture
async def listener(db):
    channel = f"rt_listen_{uuid.uuid4().hex[:8]}"
    sink = Recorder()
    # retry_s=1: a reconnect takes a second, so a test can commit while it is away
    lis = ChangeListener(db.config, channel, sink, "rt-listen-test", ping_s=0.2, retry_s=1.0)
    await lis.open()
    await until(lambda: lis.listening, "listening")
    yield lis, sink
    await lis.close()


async def notify_in_write(db: Database, channel: str, payload: str, commit: bool = True) -> int:
    """A row written and a NOTIFY in one primary transaction; returns an LSN taken in it
    before the commit."""
    uow = db.unit_of_work()
    try:
        async with uow.write() as conn:
            await conn.execute(text(f"INSERT INTO {SCHEMA}.notes VALUES (:p)"), {"p": payload})
            await conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})
            inside = (await conn.execute(text("SELECT pg_current_wal_insert_lsn()::text"))).scalar()
            if not commit:
                raise RuntimeError("roll back")
    except RuntimeError:
        pass
    hi, lo = inside.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


async def test_notices_of_commits_then_a_fence_past_them(db, listener):
    lis, sink = listener
    start = sink.last("listening")
    assert isinstance(start, int) and start > 0
    await notify_in_write(db, lis.channel, "rolled-back", commit=False)
    inside = await notify_in_write(db, lis.channel, "row:p-1")
    await until(lambda: sink.last("fenced") is not None, "fenced after the notice")
    assert [v for k, v in sink.events if k == "changed"] == ["row:p-1"]
    kinds = [k for k, _ in sink.events]
    assert kinds.index("changed") < kinds.index("fenced")
    assert sink.last("fenced") > inside  # past the writing transaction's own WAL
    assert await lis.health_checks()[f"postgres/{DB}:listen {lis.channel}"][0]() is True


async def test_killed_listener_is_lost_at_once_then_listens_with_a_fence_past_the_gap(
    db, listener, stack
):
    lis, sink = listener
    admin = await asyncpg.connect(stack.pg_admin_dsn(DB))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", lis.backend_pid)
    finally:
        await admin.close()
    await until(lambda: sink.count("lost") == 1, "lost reported")
    assert lis.listening is False and lis.losses == 1
    check = lis.health_checks()[f"postgres/{DB}:listen {lis.channel}"][0]
    assert await check() is False
    # A write while nobody listens: its notice is gone for good...
    uow = db.unit_of_work()
    async with uow.write() as conn:
        await conn.execute(text(f"INSERT INTO {SCHEMA}.notes VALUES ('missed')"))
        await conn.execute(text("SELECT pg_notify(:c, 'missed')"), {"c": lis.channel})
    assert sink.count("listening") == 1, "reconnected before the write: the test proves nothing"
    await until(lambda: sink.count("listening") == 2, "listening again")
    # ...so the new fence must cover it: a read that has seen it sees the write.
    assert sink.last("listening") >= uow.last_lsn
    assert ("changed", "missed") not in sink.events
    assert await check() is True
