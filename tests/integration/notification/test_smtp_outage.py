"""The SMTP server dies mid-batch (SIGKILL of a private sink while the service drains a
backlog) and comes back: every event's email arrives, an email that arrives twice is one that
was in flight at the kill and carries the same Message-ID, and while the server is down no
event is logged as sent whose email is not in the mailbox (a 'sent' row is what makes a
redelivery skip the email)."""

from __future__ import annotations

import asyncio
import email.policy
import time
import uuid
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest

from services.notification.domain import LogStatus
from shop.events import v1 as events
from stack.components import smtp_sink
from stack.runner import Stack
from tests.integration.notification.conftest import eventually, free_port, running_app, sample

pytestmark = pytest.mark.stack

EVENTS = 400
IN_FLIGHT = 8
DOMAIN = "notification.shopmesh.local"


def _message_ids(mail: Path) -> list[str]:
    """The Message-ID of every stored message, one per file (duplicates kept)."""
    parser = BytesHeaderParser(policy=email.policy.compat32)
    out = []
    for path in mail.glob("*.eml"):
        with open(path, "rb") as f:
            out.append(str(parser.parse(f)["Message-ID"]))
    return out


async def _logged_sent(app, eids: set[str]) -> set[str]:
    sent = set()
    for eid in eids:
        entry = await app.log.get(eid)
        if entry is not None and entry.status is LogStatus.SENT:
            sent.add(eid)
    return sent


async def test_smtp_killed_mid_batch_loses_nothing_and_logs_no_unsent_email(
    topics, users, produce, tmp_path
):
    smtp_port, http_port, mail = free_port(), free_port(), tmp_path / "mail"
    sink = Stack([smtp_sink(smtp_port, http_port, mail)], tmp_path / "state")
    sink.up()
    try:
        eids: set[str] = set()
        acks = []
        for i in range(EVENTS):
            rec = events.UserRegistered(
                event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), user_id=f"out-{i}",
                email=f"out-{i}@shop.test", display_name="Outage",
            )  # fmt: skip
            eids.add(str(rec.event_id))
            ack = await produce.producer.send(
                topics.users, rec, key=rec.user_id, event_id=str(rec.event_id)
            )
            acks.append(ack)
        await asyncio.gather(*acks)
        expected = {f"<{eid}@{DOMAIN}>" for eid in eids}

        async with running_app(
            topics, users,
            NOTIFICATION_SMTP_PORT=str(smtp_port), NOTIFICATION_RETRY_DELAYS_S="1,10",
            NOTIFICATION_MAX_IN_FLIGHT=str(IN_FLIGHT), NOTIFICATION_SMTP_TIMEOUT_S="3",
        ) as app:  # fmt: skip
            await eventually(lambda: len(_message_ids(mail)) >= EVENTS // 6, 60, every=0.005)
            sink.procs.kill9("smtp-sink")
            at_kill = len(_message_ids(mail))
            assert at_kill < EVENTS, "the backlog drained before the kill; raise EVENTS"

            # Down: the sends in flight fail and their events go to the retry stage.
            retried = lambda: sample(  # noqa: E731
                app, "notification_events_retried_total", topic=topics.users,
                reason="smtp-unavailable",
            ) or 0  # fmt: skip
            await eventually(lambda: retried() >= 1, 30)
            await asyncio.sleep(0.5)
            delivered = {eid for eid in eids if f"<{eid}@{DOMAIN}>" in set(_message_ids(mail))}
            logged = await _logged_sent(app, eids)
            assert logged <= delivered, f"logged as sent, never delivered: {logged - delivered}"
            assert len(delivered) < EVENTS

            started = time.monotonic()
            sink.start(sink.by_name("smtp-sink"))
            await eventually(lambda: set(_message_ids(mail)) >= expected, 90, every=0.5)
            await asyncio.sleep(1.5)  # a late duplicate would land now
            stored = _message_ids(mail)
            assert await _logged_sent(app, eids) == eids
            print(f"killed after {at_kill}/{EVENTS}; back in {time.monotonic() - started:.1f} s")
    finally:
        sink.down()

    assert set(stored) == expected  # nothing lost, nothing but our events
    copies = {mid: stored.count(mid) for mid in set(stored)}
    duplicated = {mid: n for mid, n in copies.items() if n > 1}
    print(f"resent with the same Message-ID: {len(duplicated)}")
    # Only the sends in flight at the kill may have reached the server without their 250.
    assert len(duplicated) <= IN_FLIGHT and all(n == 2 for n in duplicated.values())
