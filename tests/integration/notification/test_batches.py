"""Batching against real servers: a poll's claims are one INSERT, claims made together are
decided exactly as one by one would be, and a user's emails share one GetUser."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from services.notification.domain import Claim, Kind, LogStatus
from services.notification.repository import PgNotificationLog
from tests.integration.notification.conftest import eventually, mail_for, running_app

pytestmark = pytest.mark.stack

STALE = timedelta(seconds=60)


def _count_statements(sync_engine) -> list[str]:
    """Every SQL statement the engine (and its execution_options copies) runs."""
    seen: list[str] = []
    event.listen(sync_engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


async def test_claims_made_together_are_one_insert_and_decide_as_one_by_one(infra):
    engine = create_async_engine(infra.pg_dsn("notification", driver="postgresql+asyncpg"))
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    log = PgNotificationLog(engine.begin, statement=autocommit.connect)
    try:
        await log.create_schema()
        now = datetime.now(UTC)
        ids = {k: f"batch-{k}-{uuid.uuid4().hex[:8]}" for k in
               ("new1", "new2", "sent", "released", "stale", "fresh", "failed")}  # fmt: skip

        async def claim(key: str, at: datetime = now) -> Claim:
            return await log.claim(ids[key], Kind.WELCOME, "u-b", "", at, STALE)

        for key in ("sent", "released", "fresh", "failed"):
            assert await claim(key) is Claim.CLAIMED
        assert await claim("stale", now - 2 * STALE) is Claim.CLAIMED
        await log.mark_sent(ids["sent"], now, "a@shop.test", "s")
        await log.release(ids["released"], "smtp-unavailable: down")
        await log.mark_failed(ids["failed"], "invalid-address: x")

        statements = _count_statements(engine.sync_engine)
        order = ["new1", "new2", "new1", "sent", "released", "stale", "fresh", "failed"]
        got = await asyncio.gather(*(claim(k) for k in order))
        assert got == [
            Claim.CLAIMED, Claim.CLAIMED, Claim.HELD,  # an event twice: the 2nd sees the 1st
            Claim.ALREADY_SENT, Claim.CLAIMED, Claim.CLAIMED, Claim.HELD, Claim.CLAIMED,
        ]  # fmt: skip
        inserts = [s for s in statements if s.lstrip().startswith("INSERT")]
        assert len(inserts) == 1, statements
        assert len(statements) <= 3 + 2  # INSERT, SELECT ... FOR UPDATE, UPDATE (+ BEGIN/COMMIT)

        for key, attempts in (("released", 2), ("stale", 2), ("failed", 2), ("new1", 1)):
            entry = await log.get(ids[key])
            assert entry is not None and entry.status is LogStatus.SENDING, key
            assert entry.attempts == attempts, key
        assert (await log.get(ids["sent"])).status is LogStatus.SENT

        before = len(statements)
        await asyncio.gather(
            log.mark_sent(ids["new1"], now, "n1@shop.test", "one"),
            log.mark_sent(ids["new2"], now, "n2@shop.test", "two"),
            log.release(ids["stale"], "smtp-unavailable: again"),
            log.mark_failed(ids["released"], "smtp-rejected: no", "r@shop.test", "r"),
        )
        assert len(statements) - before == 1  # one UPDATE for the four
        new1, stale, rel = [await log.get(ids[k]) for k in ("new1", "stale", "released")]
        assert (new1.status, new1.recipient, new1.subject) == (
            LogStatus.SENT,
            "n1@shop.test",
            "one",
        )
        assert stale.status is LogStatus.RETRYING
        assert (rel.status, rel.recipient) == (LogStatus.FAILED, "r@shop.test")
    finally:
        await engine.dispose()


async def test_a_backlog_is_claimed_one_insert_per_poll_and_looks_each_user_up_once(
    topics, users, produce, since_ns
):
    buyers = [await users.add(f"batch-{i}-{uuid.uuid4().hex[:6]}@shop.test", f"B{i}")
              for i in range(5)]  # fmt: skip
    eids = set()
    for i in range(300):
        rec = produce.order_placed_record(f"ord-b{i}-{uuid.uuid4().hex[:6]}", buyers[i % 5], 3, 0)
        await produce.publish_order(rec)
        eids.add(str(rec.event_id))

    async with running_app(topics, users) as app:
        statements = _count_statements(app.db.primary.sync_engine)
        stage0 = app.workers[0].consumer
        polls: list[int] = []
        getmany = stage0.getmany

        async def counted(*args, **kwargs):
            batch = await getmany(*args, **kwargs)
            if batch:
                polls.append(len(batch))
            return batch

        stage0.getmany = counted  # type: ignore[method-assign]
        await eventually(lambda: len(mail_for(since_ns, eids)) == len(eids), within=120)
        claims = [s for s in statements if "INSERT INTO notification_log" in s]
        assert sum(polls) == len(eids)
        assert len(claims) == len(polls), (polls, len(claims))
        # Each buyer asked for once (then cached), in batches: at most one call per poll.
        assert app.users.lookups.keys_fetched == len(buyers)
        assert 1 <= app.users.lookups.calls <= len(polls)
        got = mail_for(since_ns, eids)
        assert all(len(copies) == 1 for copies in got.values())
