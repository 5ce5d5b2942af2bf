"""Failure paths against real servers: a dependency away (user service, order service,
schema registry) retries instead of dead-lettering, an undeliverable address dead-letters
at once, a waiting retry does not hold up its partition, dead letters are replayed by time
window (RPC and CLI), and consumer lag shows a backlog left by a restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.timestamp_pb2 import Timestamp
from grpclib.client import Channel

from services.notification.domain import Claim, Kind, LogStatus
from services.runtime.kafka import ConsumedEvent
from services.runtime.server import App
from shop.events import v1 as events
from shop.notification.v1 import notification_grpc
from shop.notification.v1 import notification_pb2 as pb
from tests.integration.notification.conftest import (
    cli_replay,
    event_id_of,
    eventually,
    mail_dir,
    mail_for,
    place_real_order,
    read_topic,
    running_app,
    sample,
)

pytestmark = pytest.mark.stack

# Stage 1 comes round quickly; stage 2 leaves a dependency time to restart before the
# record would be dead-lettered as retries-exhausted.
OUTAGE_DELAYS = "1,30"


def _address(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:6]}@shop.test"


def _has(eids: set[str]) -> Callable[[list], bool]:
    return lambda records: eids <= {event_id_of(r) for r in records}


async def _no_record_of(bootstrap: str, topic: str, eid: str) -> bool:
    """Nothing for `eid` in `topic`, read from its beginning to its current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(2)]  # the `topics` fixture's 2
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        seen: list = []
        async with asyncio.timeout(20):
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    seen.extend(records)
    finally:
        await consumer.stop()
    return all(event_id_of(r) != eid for r in seen)


def _arrival_ns(eid: str) -> list[int]:
    """Sink arrival times (ns, from the file names) of an event's emails."""
    out = []
    for path in mail_dir().glob("*.eml"):
        if f"<{eid}@".encode() in path.read_bytes():
            out.append(int(path.name.split("-", 1)[0]))
    return sorted(out)


# ---------------------------------------------------------------- dependencies away


async def test_user_service_down_goes_to_retry_not_dlq_and_sends_once_it_is_back(
    stack, topics, users, produce, since_ns, infra
):
    uid = await users.add(_address("outage"), "Una")
    order_id = f"ord-{uuid.uuid4().hex[:10]}"
    async with running_app(topics, users, NOTIFICATION_RETRY_DELAYS_S=OUTAGE_DELAYS) as app:
        stack.stop("user")
        try:
            eid = await produce.order_placed(order_id, uid, units=7)
            [retry] = [
                r
                for r in await read_topic(
                    infra.kafka_bootstrap, f"{topics.orders}.retry.1", _has({eid})
                )
                if event_id_of(r) == eid
            ]
            headers = dict(retry.headers)
            assert headers["x-retry-last-error"].startswith(b"dependency-unavailable: user")
            assert headers["x-retry-attempt"] == b"1"
            assert headers["x-origin-topic"].decode() == topics.orders
            assert retry.key == order_id.encode() and retry.value  # the original record
            assert not mail_for(since_ns, {eid})
            entry = await app.log.get(eid)
            assert entry is not None and entry.status is LogStatus.RETRYING
        finally:
            stack.start("user")
        got = await eventually(lambda: mail_for(since_ns, {eid}).get(eid), within=90)
        assert len(got) == 1 and order_id in got[0].subject
        await asyncio.sleep(1)  # a stray second send would land now
        assert len(mail_for(since_ns, {eid})[eid]) == 1
        assert (sample(app, "notification_events_retried_total", topic=topics.orders,
                       reason="dependency-unavailable") or 0) >= 1  # fmt: skip
        assert sample(app, "notification_emails_sent_total", topic=topics.orders,
                      kind="OrderPlaced") == 1  # fmt: skip
        assert sample(app, "notification_send_seconds_count", kind="OrderPlaced") == 1
        assert not sample(app, "notification_events_dead_lettered_total", topic=topics.orders,
                          reason="retries-exhausted")  # fmt: skip
    assert await _no_record_of(infra.kafka_bootstrap, f"{topics.orders}.dlq", eid)


async def test_order_service_down_status_email_retries_then_carries_total_from_get_order(
    stack, topics, users, produce, since_ns, infra
):
    order, address = await place_real_order(stack, quantity=2)  # 2 x 12.25 = USD 24.50
    eid = uuid.uuid4()
    rec = events.OrderStatusChanged(
        event_id=eid,
        occurred_at=datetime.now(UTC),
        order_id=order.id,
        user_id=order.user_id,
        previous_status=events.OrderStatus.CONFIRMED,
        status=events.OrderStatus.SHIPPED,
        reason=None,
    )
    async with running_app(topics, users, NOTIFICATION_RETRY_DELAYS_S=OUTAGE_DELAYS) as app:
        stack.stop("order")
        try:
            await produce.producer.publish(topics.orders, rec, key=order.id, event_id=str(eid))
            records = await read_topic(
                infra.kafka_bootstrap, f"{topics.orders}.retry.1", _has({str(eid)})
            )
            [retry] = [r for r in records if event_id_of(r) == str(eid)]
            assert dict(retry.headers)["x-retry-last-error"].startswith(
                b"dependency-unavailable: order"
            )
        finally:
            stack.start("order")
        got = await eventually(lambda: mail_for(since_ns, {str(eid)}).get(str(eid)), within=90)
        [mail] = got
        assert mail.subject == f"Order {order.id} shipped - total USD 24.50"
        assert address in mail.to
        assert order.id in mail.text and "USD 24.50" in mail.text
        assert not sample(app, "notification_events_dead_lettered_total", topic=topics.orders,
                          reason="retries-exhausted")  # fmt: skip


async def test_registry_unreachable_while_decoding_retries_not_dead_letters(
    stack, topics, users, produce, since_ns, infra
):
    # Produced while the registry is up; the service below starts with an empty schema
    # cache, so decoding this record needs the registry.
    eid = await produce.user_registered("u-reg", _address("registry"))
    stack.stop("registry")
    try:
        async with running_app(topics, users, NOTIFICATION_RETRY_DELAYS_S=OUTAGE_DELAYS) as app:
            try:
                records = await read_topic(
                    infra.kafka_bootstrap, f"{topics.users}.retry.1", _has({eid}), within=60
                )
                [retry] = [r for r in records if event_id_of(r) == eid]
                assert dict(retry.headers)["x-retry-last-error"].startswith(
                    b"dependency-unavailable: registry"
                )
                assert (sample(app, "notification_events_consumed_total", topic=topics.users,
                               stage="0", kind="undecodable") or 0) >= 1  # fmt: skip
            finally:
                stack.start("registry")
            got = await eventually(lambda: mail_for(since_ns, {eid}).get(eid), within=90)
            assert len(got) == 1
            assert not sample(app, "notification_events_dead_lettered_total",
                              topic=topics.users, reason="unknown-schema")  # fmt: skip
            assert not sample(app, "notification_events_dead_lettered_total",
                              topic=topics.users, reason="undeserializable")  # fmt: skip
    finally:
        stack.start("registry")  # idempotent; in case the app failed to start
    assert await _no_record_of(infra.kafka_bootstrap, f"{topics.users}.dlq", eid)


# ---------------------------------------------------------------- undeliverable address


@pytest.mark.parametrize("address", ["not-an-address", "eve@shop.test\r\nBcc: all@shop.test"])
async def test_invalid_recipient_is_dead_lettered_at_once_with_error_headers(
    service, produce, since_ns, infra, topics, address
):
    eid = await produce.user_registered("u-bad", address)
    good = await produce.user_registered("u-fine", _address("fine"))  # consumption goes on
    await eventually(lambda: mail_for(since_ns, {good}).get(good))
    records = await read_topic(infra.kafka_bootstrap, f"{topics.users}.dlq", _has({eid}))
    [dead] = [r for r in records if event_id_of(r) == eid]
    h = dict(dead.headers)
    assert h["x-dlq-reason"] == b"invalid-address"
    assert h["x-dlq-attempts"] == b"1"  # permanent: no retry stage first
    assert h["x-dlq-source-topic"].decode() == topics.users
    assert h["x-dlq-source-partition"].isdigit() and h["x-dlq-source-offset"].isdigit()
    assert int(h["x-dlq-timestamp-ms"]) > 0
    assert b"undeliverable address" in h["x-dlq-error"]
    assert b"\n" not in h["x-dlq-error"] and b"\r" not in h["x-dlq-error"]
    assert b"Traceback" not in h["x-dlq-error"]
    assert dead.key == b"u-bad" and dead.value  # original key and value
    assert h["event_id"].decode() == eid  # the record's own headers kept
    assert not mail_for(since_ns, {eid})
    assert (await service.log.get(eid)).status is LogStatus.FAILED
    assert sample(service, "notification_events_dead_lettered_total", topic=topics.users,
                  reason="invalid-address") == 1  # fmt: skip
    assert not sample(service, "notification_events_retried_total", topic=topics.users,
                      reason="invalid-address")  # fmt: skip
    assert await _no_record_of(infra.kafka_bootstrap, f"{topics.users}.retry.1", eid)


# ---------------------------------------------------------------- partition not blocked


async def test_record_waiting_in_a_retry_stage_does_not_hold_up_its_partition(
    topics, users, produce, since_ns, infra
):
    """A is held (another worker's fresh claim) and must wait in the retry stages until the
    claim goes stale; B, produced after A with the same key (so the same partition), must
    be emailed while A waits, not after it."""
    async with running_app(
        topics, users, NOTIFICATION_RETRY_DELAYS_S="0.5,2", NOTIFICATION_STALE_CLAIM_S="20"
    ) as app:
        await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in app.workers)), 30)
        a, b = uuid.uuid4(), uuid.uuid4()
        claim = await app.log.claim(
            str(a), Kind.WELCOME, "u-same", "", datetime.now(UTC), timedelta(seconds=20)
        )
        assert claim is Claim.CLAIMED
        await produce.user_registered("u-same", _address("held"), event_id=a)
        await produce.user_registered("u-same", _address("later"), event_id=b)
        records = await read_topic(infra.kafka_bootstrap, topics.users, _has({str(a), str(b)}))
        partitions = {event_id_of(r): r.partition for r in records}
        assert partitions[str(a)] == partitions[str(b)]

        await eventually(lambda: mail_for(since_ns, {str(b)}).get(str(b)), within=60)
        assert not mail_for(since_ns, {str(a)}), "A was not held: the test proves nothing"
        assert (sample(app, "notification_events_retried_total", topic=topics.users,
                       reason="claim-held") or 0) >= 1  # fmt: skip
        assert (await app.log.get(str(a))).status is LogStatus.SENDING

        await eventually(lambda: mail_for(since_ns, {str(a)}).get(str(a)), within=90)
        await asyncio.sleep(1)
        assert len(_arrival_ns(str(a))) == 1 and len(_arrival_ns(str(b))) == 1
        assert _arrival_ns(str(b))[0] < _arrival_ns(str(a))[0]


# ---------------------------------------------------------------- replay by time


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


async def test_replay_by_time_window_replays_only_that_window_and_sends_once(
    stack, service, produce, since_ns, infra, topics, users
):
    """Three dead letters A, B, C at distinct times (SMTP sink down, retries exhausted).
    RPC [A|B, B|C) replays B only; CLI --since B|C (ISO) replays C only; CLI --until 15m
    replays nothing; CLI --since 15m replays all three, and only A is still unsent."""
    dlq = f"{topics.users}.dlq"
    eids: list[str] = []
    stack.stop("smtp-sink")
    try:
        for tag in ("a", "b", "c"):
            eids.append(await produce.user_registered(f"u-{tag}", _address(f"window-{tag}")))
            await read_topic(infra.kafka_bootstrap, dlq, _has({eids[-1]}))
            await asyncio.sleep(1.5)  # the next dead letter's time is clearly later
    finally:
        stack.start("smtp-sink")
    a, b, c = eids
    dead = {
        event_id_of(r): r for r in await read_topic(infra.kafka_bootstrap, dlq, _has(set(eids)))
    }
    at = {eid: int(dict(dead[eid].headers)["x-dlq-timestamp-ms"]) for eid in eids}
    assert at[a] < at[b] < at[c]
    ab, bc = (at[a] + at[b]) // 2, (at[b] + at[c]) // 2

    server = App(service.cfg.server, [service.handlers()], log_calls=False)
    await server.start()
    channel = Channel("127.0.0.1", server.grpc_port)
    try:
        stub = notification_grpc.NotificationServiceStub(channel)
        since, until = Timestamp(), Timestamp()
        since.FromMilliseconds(ab)
        until.FromMilliseconds(bc)
        reply = await stub.ReplayDeadLetters(pb.ReplayDeadLettersRequest(since=since, until=until))
        assert (reply.replayed, reply.scanned) == (1, 3)
    finally:
        channel.close()
        await server.stop(0)
    await eventually(lambda: mail_for(since_ns, {b}).get(b))

    assert await cli_replay(topics, users, "--since", _iso(bc)) == {"replayed": 1, "scanned": 3}
    await eventually(lambda: mail_for(since_ns, {c}).get(c))
    assert not mail_for(since_ns, {a}), "A is outside both windows"
    assert (await service.log.get(a)).status is LogStatus.RETRYING

    assert await cli_replay(topics, users, "--until", "15m") == {"replayed": 0, "scanned": 3}
    duplicates_before = sample(service, "notification_duplicates_total", topic=topics.users) or 0
    assert await cli_replay(topics, users, "--since", "15m") == {"replayed": 3, "scanned": 3}
    await eventually(lambda: mail_for(since_ns, {a}).get(a))
    dups = lambda: sample(service, "notification_duplicates_total", topic=topics.users)  # noqa: E731
    await eventually(lambda: (dups() or 0) >= duplicates_before + 2)
    await asyncio.sleep(1)  # a stray second send would land now
    got = mail_for(since_ns, set(eids))
    assert {eid: len(copies) for eid, copies in got.items()} == {a: 1, b: 1, c: 1}


# ---------------------------------------------------------------- lag after a restart


async def test_lag_shows_a_backlog_left_by_a_restart_before_it_drains(
    topics, users, produce, since_ns
):
    group = f"nt-lag-{uuid.uuid4().hex[:8]}"
    lag = {"name": "notification_consumer_lag", "topic": topics.users, "stage": "0"}
    async with running_app(topics, users, group) as first:
        warm = await produce.user_registered("u-warm", _address("warm"))
        await eventually(lambda: mail_for(since_ns, {warm}).get(warm))
        await eventually(lambda: sample(first, **lag) == 0)  # committed past it

    backlog = 12
    eids = {await produce.user_registered(f"u-{i}", _address(f"lag{i}")) for i in range(backlog)}

    gate = asyncio.Event()
    async with running_app(topics, users, group) as second:
        process = second.pipeline.process

        async def held(ev: ConsumedEvent, stage: int) -> None:  # nothing runs before `gate`
            await gate.wait()
            return await process(ev, stage)

        second.pipeline.process = held  # type: ignore[method-assign]
        # The whole backlog is visible before a single record of it is done.
        await eventually(lambda: sample(second, **lag) == backlog, within=60)
        assert not mail_for(since_ns, eids)
        gate.set()
        await eventually(lambda: len(mail_for(since_ns, eids)) == backlog, within=90)
        await eventually(lambda: sample(second, **lag) == 0)
        assert sample(second, "notification_emails_sent_total", topic=topics.users,
                      kind="UserRegistered") == backlog  # fmt: skip
        assert sample(second, "notification_send_seconds_count", kind="UserRegistered") == backlog
        assert sample(second, "notification_events_consumed_total", topic=topics.users,
                      stage="0", kind="shop.events.v1.UserRegistered") == backlog  # fmt: skip
        assert (sample(second, "notification_event_to_email_seconds_count",
                       topic=topics.users) or 0) == backlog  # fmt: skip
