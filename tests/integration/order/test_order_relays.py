"""Outbox relays against real FerretDB, Kafka and the registry, where at-least-once shows:
two relays draining one database at once while orders keep changing, a relay process
killed after publishing but before deleting what it published, and the broker lost in the
middle of a relay's flush. Every event arrives; a record seen twice is the same event (same
id, key and payload), so consumers that dedupe by id see each once.
Each test uses its own database, so the order service's relay never touches these orders."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import os
import signal
import sys
import time
import uuid

import pytest

from services.order.domain import (
    Address,
    LineItem,
    Money,
    Order,
    OrderLine,
    OrderStatus,
    PlaceOrder,
)
from services.order.outbox import LazyProducer, OutboxRelay
from services.order.repository import MongoOrders, OrderLockTimeout, unpack_entry
from services.runtime.kafka import AvroSerde, ConsumedEvent, EventProducer
from tests.integration.order.order_helpers import (
    TopicTail,
    ferretdb_table_locked,
    scratch_topic,
    waiting_on_lock,
)

pytestmark = pytest.mark.stack

ADDR = Address("Ada", "1 Main St", "Lyon", "69001", "FR")
MUG = [OrderLine("p-1", "Mug", 1, Money("USD", 3, 0))]


async def confirmed(repo: MongoOrders, i: int) -> Order:
    cmd = PlaceOrder(f"u-relays-{i}", f"key-{uuid.uuid4().hex}", (LineItem("p-1", 1),), ADDR)
    order = Order.start(uuid.uuid4().hex, cmd, cmd.lines, dt.datetime.now(dt.UTC))
    assert await repo.add(order)
    order.confirm(MUG, dt.datetime.now(dt.UTC), None)
    assert await repo.save(order)
    return order


async def stored_events(repo: MongoOrders) -> dict[str, str]:
    """event id -> order id of every event waiting in the outbox (the version claims)."""
    claims = [c async for c in repo.claims.find({})]
    return {unpack_entry(e)["id"]: c["order_id"] for c in claims for e in c["events"]}


async def backlog(repo: MongoOrders) -> int:
    return await repo.claims.count_documents({})


def assert_duplicates_are_the_same_event(got: list[ConsumedEvent]) -> None:
    first: dict[str, ConsumedEvent] = {}
    for e in got:
        seen = first.setdefault(e.event_id or "", e)
        assert (e.key, e.name, e.value) == (seen.key, seen.name, seen.value), e.event_id


async def test_two_relays_at_once_publish_and_mark_every_event(repo, kafka_cfg, infra):
    """Two relays (each its own FerretDB client and producer) drain one outbox while a
    writer appends OrderStatusChanged events to orders they are relaying. Every event,
    including those appended mid-pass, is published and marked exactly once in total."""
    orders = [await confirmed(repo, i) for i in range(60)]
    expected = await stored_events(repo)
    assert len(expected) == 60
    relays_repos = [MongoOrders(infra.mongo_url(), repo.database) for _ in range(2)]
    for r in relays_repos:
        await r.open()
    writer_done = asyncio.Event()

    async def write() -> None:
        """Pay 20 orders while the relays run: their new events land in documents the
        relays may have claimed and are publishing (the mark must keep them)."""
        try:
            for order in orders[::3]:
                for _ in range(20):
                    current = await repo.get(order.id)
                    assert current is not None
                    current.advance(OrderStatus.PAID, dt.datetime.now(dt.UTC), None)
                    new = {e.event_id for e in current.events}
                    try:
                        if await repo.save(current):
                            expected.update(dict.fromkeys(new, order.id))
                            break
                    except OrderLockTimeout:
                        pass
                else:
                    pytest.fail(f"could not pay {order.id}")
                await asyncio.sleep(0.01)
        finally:
            writer_done.set()

    async def drive(relay: OutboxRelay) -> int:
        marked = 0
        while True:
            n = await relay.run_once()
            marked += n
            if n == 0:
                if writer_done.is_set() and not await backlog(relay.repo):
                    return marked
                await asyncio.sleep(0.05)

    try:
        async with scratch_topic(kafka_cfg) as topic, TopicTail(kafka_cfg, topic, 3) as tail:
            serde = AvroSerde(kafka_cfg.registry_url, auto_register=True)
            async with (
                EventProducer(kafka_cfg, serde) as p1,
                EventProducer(kafka_cfg, serde) as p2,
            ):
                relays = [
                    OutboxRelay(r, p, topic=topic, batch=8)
                    for r, p in zip(relays_repos, (p1, p2), strict=True)
                ]
                *marked, _ = await asyncio.wait_for(
                    asyncio.gather(*(drive(r) for r in relays), write()), timeout=180
                )
            got = await tail.collect(
                lambda e: True, lambda k: {e.event_id for e in k} >= set(expected), 30
            )
    finally:
        for r in relays_repos:
            await r.close()

    assert len(expected) == 80
    assert {e.event_id for e in got} == set(expected)  # none lost, none made up
    assert all(e.key == expected[e.event_id] for e in got)
    assert_duplicates_are_the_same_event(got)
    assert sum(marked) == 80  # each event marked by one relay, once
    assert await backlog(repo) == 0
    # Per order, first sightings keep the order the events happened in (same key, same
    # partition; a republished OrderPlaced may follow, carrying its first id).
    firsts: dict[str, list[str]] = collections.defaultdict(list)
    ever: set[str] = set()
    for e in got:
        if e.event_id not in ever:
            ever.add(e.event_id or "")
            firsts[e.key or ""].append(e.name.rpartition(".")[2])
    paid = {o.id for o in orders[::3]}
    assert all(
        names == (["OrderPlaced", "OrderStatusChanged"] if key in paid else ["OrderPlaced"])
        for key, names in firsts.items()
    )


async def test_relay_killed_after_publish_before_mark_republishes_same_ids(
    repo, kafka_cfg, infra, tmp_path
):
    """The crash window of the outbox: events acknowledged by Kafka, their claims not yet
    deleted. The relay process's delete is made to wait (the claims' table is locked in
    PostgreSQL, reads still answer) and it is SIGKILLed once every order's event is on the
    topic and its delete is waiting; the waiting delete is then cancelled. A new relay
    republishes them with the same event ids and the outbox drains."""
    orders = [await confirmed(repo, i) for i in range(12)]
    ids = {o.id for o in orders}
    expected = await stored_events(repo)
    env = {
        **os.environ,
        "ORDER_MONGO_URL": infra.mongo_url(),
        "ORDER_MONGO_DATABASE": repo.database,
        "ORDER_KAFKA_BOOTSTRAP": kafka_cfg.bootstrap_servers,
        "ORDER_RELAY_BATCH": "50",
        "ORDER_RELAY_LEASE_S": "2",
        "ORDER_RELAY_GRACE_S": "0",
        "ORDER_LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path / "relay.log"
    async with TopicTail(kafka_cfg) as tail:
        # The claims' table in EXCLUSIVE mode: reads answer, the relay's delete waits.
        admin = infra.pg_admin_dsn("ferretdb")
        async with ferretdb_table_locked(admin, repo.database, "outbox", "EXCLUSIVE") as pg:
            with log_path.open("wb") as log:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "services.order.outbox", env=env, stderr=log
                )
            try:
                before = await tail.collect(
                    lambda e: e.key in ids, lambda k: {e.key for e in k} >= ids, 60
                )
                # Its delete follows the acknowledgements; on a loaded machine a send that
                # timed out (yet landed) is sent again first, after a backoff and a new
                # producer, so the wait is as long as the publish's.
                deadline = time.monotonic() + 60
                while not await waiting_on_lock(pg, "DELETE"):
                    if time.monotonic() > deadline:
                        pytest.fail(
                            "the relay's delete never reached PostgreSQL; relay log:\n"
                            + log_path.read_text(errors="replace")[-4000:]
                        )
                    await asyncio.sleep(0.1)
            finally:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            for pid in await waiting_on_lock(pg, "DELETE"):  # the killed relay's never happens
                await pg.execute("SELECT pg_cancel_backend($1)", pid)
        assert {e.key for e in before} == ids, "the relay did not publish every order"
        # Published and acknowledged, yet nothing deleted: the kill hit the window.
        assert await stored_events(repo) == expected

        serde = AvroSerde(kafka_cfg.registry_url)
        async with EventProducer(kafka_cfg, serde) as producer:
            relay = OutboxRelay(repo, producer, batch=50)
            for _ in range(100):  # the dead relay's orders are free after their 2 s lease
                await relay.run_once()
                if not await backlog(repo):
                    break
                await asyncio.sleep(0.2)
        n_before = collections.Counter(e.key for e in before)

        def republished(kept: list[ConsumedEvent]) -> bool:
            now = collections.Counter(e.key for e in kept)
            return all(now[i] > n_before[i] for i in ids)

        got = await tail.collect(lambda e: e.key in ids, republished, 20)
    assert await backlog(repo) == 0
    after = collections.Counter(e.key for e in got)
    assert all(after[i] > n_before[i] for i in ids), "an order was not republished"
    assert {e.event_id for e in got} == set(expected)  # the same ids, no new ones
    assert all(e.key == expected[e.event_id] for e in got)
    assert_duplicates_are_the_same_event(got)


async def test_broker_lost_mid_flush_loses_no_event_and_duplicates_keep_their_ids(
    repo, kafka_cfg, infra
):
    """Kafka stops while a relay is flushing, both ways in: orders written by the relay's
    own process (handed over in memory, as in the order service) and a backlog of claims
    another process wrote (the fallback). Writes go on while the broker is away; it comes
    back (restored even if the test fails: the stack shares it). Every event stored reaches
    the topic under its own id, any copy is the same event, and the outbox drains."""
    other = [await confirmed(repo, 1000 + i) for i in range(300)]  # another writer's backlog
    own_repo = MongoOrders(infra.mongo_url(), repo.database)
    await own_repo.open()
    expected = await stored_events(repo)
    assert len(expected) == len(other)
    stop_writing = asyncio.Event()

    async def write() -> None:
        """Orders placed by the relay's own process, until told to stop."""
        i = 0
        while not stop_writing.is_set():
            cmd = PlaceOrder(f"u-own-{i}", f"key-{uuid.uuid4().hex}", (LineItem("p-1", 1),), ADDR)
            order = Order.start(uuid.uuid4().hex, cmd, cmd.lines, dt.datetime.now(dt.UTC))
            assert await own_repo.add(order)
            order.confirm(MUG, dt.datetime.now(dt.UTC), None)
            events = [e.event_id for e in order.events]
            assert await own_repo.save(order)
            expected.update(dict.fromkeys(events, order.id))
            i += 1
            await asyncio.sleep(0.005)

    async with scratch_topic(kafka_cfg) as topic, TopicTail(kafka_cfg, topic, 3) as tail:
        serde = AvroSerde(kafka_cfg.registry_url, auto_register=True)
        # As the order service runs it: a producer the relay can replace. Sends to a lost
        # broker fail within seconds (default: 15 s), then are sent again.
        fast_fail = dataclasses.replace(kafka_cfg, request_timeout_ms=3000)
        producer = LazyProducer(lambda: EventProducer(fast_fail, serde, retry_backoff_ms=200))
        relay = OutboxRelay(own_repo, producer, topic=topic, batch=50, attach=True)
        running = asyncio.create_task(relay.run(poll_s=0.2, max_backoff=1.0))
        writer = asyncio.create_task(write())
        try:
            # Mid-flush: some events are out, the backlog is not.
            await tail.collect(lambda e: True, lambda k: len(k) >= 60, 60)
            assert await backlog(repo) > 0, "the backlog drained before the broker went"
            # In a thread: the relay and the writer go on meanwhile.
            await asyncio.to_thread(infra.stop, "kafka")
            try:
                await asyncio.sleep(3)  # writes go on, sends fail
            finally:
                await asyncio.to_thread(infra.start, "kafka")
            await asyncio.sleep(1)
            stop_writing.set()
            await writer
            for _ in range(300):
                if not await backlog(repo) and not relay.queue:
                    break
                await asyncio.sleep(0.2)
            got = await tail.collect(
                lambda e: True, lambda k: {e.event_id for e in k} >= set(expected), 60
            )
        finally:
            stop_writing.set()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await producer.close()
            await own_repo.close()
    assert len(expected) > len(other) + 10  # writes went on around the outage
    assert {e.event_id for e in got} == set(expected)  # none lost, none made up
    assert all(e.key == expected[e.event_id] for e in got)
    assert_duplicates_are_the_same_event(got)
    assert await backlog(repo) == 0
