"""The service process is killed (SIGKILL) mid-batch and restarted: no email is lost, and
no event is emailed twice except, at most, the ones in flight at the kill
(NOTIFICATION_MAX_IN_FLIGHT): those are resent with the same deterministic Message-ID
(documented choice, domain.decide_claim), and this test counts them so a regression shows.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from services.notification.domain import LogStatus
from services.notification.repository import PgNotificationLog
from shop.events import v1 as events
from tests.integration.notification.conftest import eventually, mail_dir, mail_for, service_env

pytestmark = pytest.mark.stack

EVENTS = 150
IN_FLIGHT = 4  # emails being sent at once by the service under test


def _spawn(env: dict[str, str], log_path) -> asyncio.subprocess.Process:
    return asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.notification.main",
        env=env, stdout=log_path, stderr=log_path,
    )  # fmt: skip


def _files_since(since_ns: int) -> int:
    return sum(1 for p in mail_dir().glob("*.eml") if int(p.name.split("-", 1)[0]) >= since_ns)


async def test_kill_9_mid_batch_loses_nothing_and_duplicates_at_most_in_flight(
    topics, users, produce, since_ns, tmp_path, infra
):
    env = {
        **os.environ,
        **service_env(topics, users, f"nt-crash-{uuid.uuid4().hex[:8]}"),
        "NOTIFICATION_STALE_CLAIM_S": "2",
        "NOTIFICATION_MAX_IN_FLIGHT": str(IN_FLIGHT),
    }
    futures = []
    eids: set[str] = set()
    for i in range(EVENTS):
        eid = str(uuid.uuid4())
        rec = events.UserRegistered(
            event_id=uuid.UUID(eid),
            occurred_at=datetime.now(UTC),
            user_id=f"crash-{i}",
            email=f"crash-{i}-{eid[:6]}@shop.test",
            display_name="Crash",
        )
        futures.append(
            await produce.producer.send(topics.users, rec, key=rec.user_id, event_id=eid)
        )
        eids.add(eid)
    await asyncio.gather(*futures)

    log_file = open(tmp_path / "service.log", "ab")  # noqa: SIM115, ASYNC230
    first = await _spawn(env, log_file)
    try:
        await eventually(lambda: _files_since(since_ns) >= EVENTS // 5, within=60, every=0.01)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        at_kill = _files_since(since_ns)
        assert at_kill < EVENTS, "the batch finished before the kill; make EVENTS larger"
        second = await _spawn(env, log_file)
        try:
            got = await eventually(
                lambda: len(m := mail_for(since_ns, eids)) == EVENTS and m, within=90, every=0.5
            )
            await asyncio.sleep(1)  # a late duplicate would land now
            got = mail_for(since_ns, eids)
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.wait(), 20)
    finally:
        if first.returncode is None:
            first.kill()
        log_file.close()

    assert set(got) == eids  # nothing lost
    duplicated = {eid: len(copies) for eid, copies in got.items() if len(copies) > 1}
    print(f"killed after {at_kill}/{EVENTS} emails; resent in-flight: {duplicated}")
    assert len(duplicated) <= IN_FLIGHT and all(n == 2 for n in duplicated.values())
    # Every copy of an event carries its deterministic Message-ID (how mail_for grouped them).
    engine = create_async_engine(infra.pg_dsn("notification", driver="postgresql+asyncpg"))
    try:
        log = PgNotificationLog(engine.begin)
        statuses = {(await log.get(eid)).status for eid in eids}
    finally:
        await engine.dispose()
    assert statuses == {LogStatus.SENT}
