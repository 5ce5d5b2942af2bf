"""Events in, emails out: real Kafka + registry, PostgreSQL log, SMTP sink."""

from __future__ import annotations

import asyncio
import os
import struct
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from grpclib.client import Channel

from services.notification.bootstrap import NotificationApp
from services.notification.config import NotificationConfig
from services.notification.domain import Claim, Kind, LogStatus
from services.runtime.auth import RuntimeAuth
from services.runtime.metrics import Metrics
from services.runtime.server import App
from shop.notification.v1 import notification_grpc
from shop.notification.v1 import notification_pb2 as pb
from stack.callers import as_platform
from tests.integration.notification.conftest import (
    cli_replay,
    eventually,
    mail_for,
    read_topic,
    sample,
    service_env,
)

pytestmark = pytest.mark.stack


def _sample(app: NotificationApp, name: str, **labels: str) -> float:
    return sample(app, name, **labels) or 0.0


async def _read_dlq(bootstrap: str, topic: str, n: int, within: float = 20) -> list:
    return await read_topic(bootstrap, topic, lambda records: len(records) >= n, within)


async def test_order_placed_sends_one_email_with_order_number_and_total(
    service, produce, users, since_ns
):
    order_id = f"ord-{uuid.uuid4().hex[:10]}"
    uid = await users.add(f"buyer-{uuid.uuid4().hex[:6]}@shop.test", "Ada")
    eid = await produce.order_placed(order_id, uid, units=42, nanos=990_000_000)
    got = await eventually(lambda: mail_for(since_ns, {eid}).get(eid))
    [mail] = got
    assert order_id in mail.subject and "USD 42.99" in mail.subject
    assert order_id in mail.text and "USD 42.99" in mail.text and "Blue mug" in mail.text
    assert order_id in mail.html and "Bergen" in mail.text
    assert mail.message_id == f"<{eid}@notification.shopmesh.local>"
    entry = await service.log.get(eid)
    assert entry is not None and entry.status is LogStatus.SENT and entry.order_id == order_id


async def test_same_event_delivered_twice_sends_one_email(service, produce, users, since_ns):
    uid = await users.add(f"twice-{uuid.uuid4().hex[:6]}@shop.test", "Bo")
    rec = produce.order_placed_record(f"ord-{uuid.uuid4().hex[:10]}", uid, 5, 0)
    await produce.publish_order(rec)
    await produce.publish_order(rec)  # the relay republished after a crash, say
    eid = str(rec.event_id)
    await eventually(lambda: _sample(
        service, "notification_duplicates_total", topic=produce.topics.orders) >= 1)  # fmt: skip
    await asyncio.sleep(0.5)  # let any stray second send land before counting
    assert len(mail_for(since_ns, {eid})[eid]) == 1


async def test_poison_records_are_dead_lettered_and_consumption_continues(
    service, produce, since_ns, infra
):
    topic = produce.topics.users
    garbage_id, unknown_id = str(uuid.uuid4()), str(uuid.uuid4())
    await produce.raw(topic, os.urandom(40), garbage_id)
    # Confluent framing with a schema id the registry never issued.
    await produce.raw(topic, b"\x00" + struct.pack(">I", 987_654_321) + b"\x02xx", unknown_id)
    good = await produce.user_registered("u-good", f"good-{uuid.uuid4().hex[:6]}@shop.test")
    await eventually(lambda: mail_for(since_ns, {good}).get(good))

    dead = await _read_dlq(infra.kafka_bootstrap, f"{topic}.dlq", 2)
    by_id = {dict(r.headers)["event_id"].decode(): r for r in dead}
    assert set(by_id) == {garbage_id, unknown_id}
    for eid, reason in ((garbage_id, b"undeserializable"), (unknown_id, b"unknown-schema")):
        h = dict(by_id[eid].headers)
        assert h["x-dlq-reason"] == reason
        assert h["x-dlq-source-topic"].decode() == topic
        assert h["x-dlq-source-partition"].isdigit() and h["x-dlq-source-offset"].isdigit()
        assert h["x-dlq-attempts"] == b"1" and int(h["x-dlq-timestamp-ms"]) > 0
        assert b"\n" not in h["x-dlq-error"] and b"Traceback" not in h["x-dlq-error"]
        assert by_id[eid].key == b"poison"
    assert by_id[unknown_id].value[:5] == b"\x00" + struct.pack(">I", 987_654_321)


@pytest.fixture
async def slow_retry_service(topics, users):
    """Retry stages 1 s and 8 s: long enough to bring the sink back within the last stage."""
    env = {
        **os.environ,
        **service_env(topics, users, f"nt-{uuid.uuid4().hex[:8]}"),
        "NOTIFICATION_RETRY_DELAYS_S": "1,8",
    }
    app = NotificationApp(NotificationConfig.from_env(env), Metrics("notification-test"))
    await app.open()
    task = asyncio.create_task(app.consume())
    yield app
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await app.close()


async def test_smtp_down_retries_and_sends_once_it_is_back(
    stack, slow_retry_service, produce, since_ns
):
    app = slow_retry_service
    stack.stop("smtp-sink")
    try:
        eids = [
            await produce.user_registered(f"u-{i}", f"retry-{i}-{uuid.uuid4().hex[:6]}@shop.test")
            for i in range(3)
        ]
        retried = lambda: _sample(  # noqa: E731
            app, "notification_events_retried_total",
            topic=produce.topics.users, reason="smtp-unavailable",
        )  # fmt: skip
        await eventually(lambda: retried() >= 6, within=20)  # stage 1 and stage 2 tried
    finally:
        stack.start("smtp-sink")
    got = await eventually(lambda: len(m := mail_for(since_ns, set(eids))) == 3 and m, within=30)
    assert all(len(copies) == 1 for copies in got.values())
    assert not _sample(app, "notification_events_dead_lettered_total",
                       topic=produce.topics.users, reason="retries-exhausted")  # fmt: skip


async def test_exhausted_retries_dead_letter_then_replay_sends_once(
    stack, service, produce, since_ns, infra, topics, users
):
    stack.stop("smtp-sink")
    try:
        eid = await produce.user_registered("u-r", f"replay-{uuid.uuid4().hex[:6]}@shop.test")
        [dead] = await _read_dlq(infra.kafka_bootstrap, f"{topics.users}.dlq", 1)
    finally:
        stack.start("smtp-sink")
    headers = dict(dead.headers)
    assert headers["x-dlq-reason"] == b"retries-exhausted"
    assert headers["x-dlq-attempts"] == b"3"
    assert b"smtp-unavailable" in headers["x-dlq-error"]
    assert (await service.log.get(eid)).status is LogStatus.RETRYING

    # Replay over the admin RPC, filtered by event id.
    server = App(service.cfg.server, [service.handlers()], log_calls=False)
    await server.start()
    channel = Channel("127.0.0.1", server.grpc_port)
    try:
        stub = notification_grpc.NotificationServiceStub(channel)
        reply = await stub.ReplayDeadLetters(pb.ReplayDeadLettersRequest(event_ids=[eid]))
        assert reply.replayed == 1 and reply.scanned >= 1
        await eventually(lambda: mail_for(since_ns, {eid}).get(eid))
        nothing = await stub.ReplayDeadLetters(pb.ReplayDeadLettersRequest(event_ids=["nope"]))
        assert nothing.replayed == 0
    finally:
        channel.close()
        await server.stop(0)

    # The CLI replays the same dead letter again: the log makes it a no-op for the customer.
    assert (await cli_replay(topics, users, "--event-id", eid))["replayed"] == 1
    await eventually(lambda: _sample(
        service, "notification_duplicates_total", topic=topics.users) >= 1)  # fmt: skip
    assert len(mail_for(since_ns, {eid})[eid]) == 1


async def test_list_notifications_pages_newest_first(stack, service, produce):
    uid = f"lister-{uuid.uuid4().hex[:8]}"
    eids = []
    for i in range(3):
        eids.append(await produce.user_registered(uid, f"l{i}-{uuid.uuid4().hex[:6]}@shop.test"))
        await eventually(lambda: service.log.get(eids[-1]))
    await eventually(lambda: all_sent(service, eids))
    stack.require("auth")  # the demo admin's token, which may list anyone's notifications
    auth = RuntimeAuth.from_env("notification")  # the hook serve() installs
    server = App(service.cfg.server, [service.handlers()], auth=auth, log_calls=False)
    await server.start()
    channel = as_platform(Channel("127.0.0.1", server.grpc_port))
    try:
        stub = notification_grpc.NotificationServiceStub(channel)

        async def pages() -> list[str]:
            seen, token = [], ""
            while True:
                r = await stub.ListNotifications(
                    pb.ListNotificationsRequest(user_id=uid, page_size=2, page_token=token)
                )
                seen += [n.event_id for n in r.notifications]
                if not r.next_page_token:
                    return seen
                token = r.next_page_token

        # The list reads the replica: wait for it to have replayed the last write.
        got = await eventually(lambda: _when(pages(), lambda s: len(s) == 3))
        assert got == list(reversed(eids))
        first = await stub.ListNotifications(pb.ListNotificationsRequest(user_id=uid))
        assert first.notifications[0].kind == pb.NOTIFICATION_KIND_WELCOME
        assert first.notifications[0].status == pb.NOTIFICATION_STATUS_SENT
    finally:
        channel.close()
        await server.stop(0)


async def all_sent(app: NotificationApp, eids: list[str]) -> bool:
    for eid in eids:
        entry = await app.log.get(eid)
        if entry is None or entry.status is not LogStatus.SENT:
            return False
    return True


async def _when(coro, pred):
    value = await coro
    return value if pred(value) else None


async def test_a_dead_workers_claim_is_taken_over_not_dead_lettered(
    topics, users, produce, since_ns
):
    """A worker killed mid-send leaves a fresh 'sending' claim. The redelivered event finds
    it held, and must wait in the retry stages until the claim goes stale, then send: the
    stages' delays (0.3 s + 0.6 s here, 5 s + 30 s by default) are shorter than the stale
    window (4 s here, 120 s by default), so counting held claims as failures dead-lettered
    exactly the emails a crash had cut."""
    env = {
        **os.environ,
        **service_env(topics, users, f"nt-{uuid.uuid4().hex[:8]}"),
        "NOTIFICATION_STALE_CLAIM_S": "4",
    }
    app = NotificationApp(NotificationConfig.from_env(env), Metrics("notification-test"))
    await app.open()
    task = asyncio.create_task(app.consume())
    try:
        eid = uuid.uuid4()
        address = f"held-{uuid.uuid4().hex[:6]}@shop.test"
        user_id = await users.add(address, "Held")
        # The dead worker's claim, made just now.
        claim = await app.log.claim(
            str(eid), Kind.WELCOME, user_id, "", datetime.now(UTC), timedelta(seconds=4)
        )
        assert claim is Claim.CLAIMED
        await produce.user_registered(user_id, address, event_id=eid)
        got = await eventually(lambda: mail_for(since_ns, {str(eid)}).get(str(eid)), within=30)
        assert len(got) == 1
        held = _sample(app, "notification_events_retried_total",
                       topic=topics.users, reason="claim-held")  # fmt: skip
        assert held >= 3, "the event never waited on the held claim: test proves nothing"
        assert not _sample(app, "notification_events_dead_lettered_total",
                           topic=topics.users, reason="retries-exhausted")  # fmt: skip
        assert (await app.log.get(str(eid))).status is LogStatus.SENT
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await app.close()
