"""The order repository and outbox relay against real FerretDB, Kafka and the registry:
versioned saves under concurrency (version claims), events published once per id, a relay
killed mid-batch loses nothing, a dead writer's claim does not block its order. Each test
uses its own database, so the order service's relay (database `order`) never publishes
these orders."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
import uuid

import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from services.order.domain import (
    Address,
    LineItem,
    Money,
    Order,
    OrderLine,
    OrderStatus,
    PlaceOrder,
)
from services.order.outbox import OutboxRelay
from services.order.repository import (
    OUTBOX_FLAG,
    MongoOrders,
    claim_id,
    event_to_doc,
    pack_entry,
    to_doc,
    unpack_entry,
)
from services.runtime.kafka import AvroSerde, EventProducer
from tests.integration.order.order_helpers import (
    TopicTail,
    ferretdb_table_locked,
    scratch_topic,
    waiting_on_lock,
)

pytestmark = pytest.mark.stack

ADDR = Address("Ada", "1 Main St", "Lyon", "69001", "FR")


def new_order(i: int) -> Order:
    now = dt.datetime.now(dt.UTC)
    cmd = PlaceOrder(f"u-outbox-{i}", f"key-{uuid.uuid4().hex}", (LineItem("p-1", 1),), ADDR)
    return Order.start(uuid.uuid4().hex, cmd, cmd.lines, now)


async def confirmed(repo: MongoOrders, i: int) -> Order:
    order = new_order(i)
    assert await repo.add(order)
    order.confirm([OrderLine("p-1", "Mug", 1, Money("USD", 3, 0))], dt.datetime.now(dt.UTC), None)
    assert await repo.save(order)
    return order


async def test_ferretdb_update_is_not_atomic(infra):
    """Why repository.py locks: FerretDB v1 applies concurrent conditional updates to one
    document without isolation. If this starts failing, the backend became atomic and the
    lock (an extra insert+delete per write) can be removed."""
    client = AsyncIOMotorClient(infra.mongo_url())
    col = client[f"order_probe_{uuid.uuid4().hex[:8]}"]["cas"]
    try:
        wins = 0
        for trial in range(3):
            await col.insert_one({"_id": trial, "version": 0})
            results = await asyncio.gather(
                *(
                    col.update_one({"_id": trial, "version": 0}, {"$set": {"version": 1}})
                    for _ in range(30)
                )
            )
            wins = max(wins, sum(r.modified_count for r in results))
        assert wins > 1, "conditional updates became atomic: the order lock may go"
    finally:
        await client.drop_database(col.database.name)
        client.close()


async def test_versioned_save_has_one_winner_under_concurrency(repo):
    order = new_order(0)
    assert await repo.add(order)

    # Ten writers each hold a copy read before anyone saved (read all first, so a slow
    # machine cannot let a late reader see the winner's CONFIRMED and skip the race).
    copies = await asyncio.gather(*(repo.get(order.id) for _ in range(10)))
    for copy in copies:
        copy.confirm(
            [OrderLine("p-1", "Mug", 1, Money("USD", 3, 0))], dt.datetime.now(dt.UTC), None
        )

    results = await asyncio.gather(*(repo.save(copy) for copy in copies))
    assert results.count(True) == 1
    doc = await repo.orders.find_one({"_id": order.id})
    # One claim of version 1 (the winner's, with its OrderPlaced); the losers wrote none.
    (claim,) = [c async for c in repo.claims.find({})]
    assert doc["version"] == 1 and doc["status"] == "CONFIRMED"
    assert claim["_id"] == claim_id(order.id, 1) and doc["writes"] == [claim["token"]]
    assert [unpack_entry(e)["type"] for e in claim["events"]] == ["shop.events.v1.OrderPlaced"]


async def test_unique_key_index_admits_one_of_racing_inserts(repo):
    base = new_order(1)

    async def insert() -> bool:
        o = Order.start(
            uuid.uuid4().hex,
            PlaceOrder(base.user_id, base.idempotency_key, base.items, ADDR),
            base.items,
            base.created_at,
        )
        return await repo.add(o)

    assert (await asyncio.gather(*(insert() for _ in range(20)))).count(True) == 1


async def test_relay_publishes_each_event_once_and_clears_the_outbox(repo, kafka_cfg):
    orders = [await confirmed(repo, i) for i in range(5)]
    ids = {o.id for o in orders}
    async with TopicTail(kafka_cfg) as tail:
        serde = AvroSerde(kafka_cfg.registry_url)
        async with EventProducer(kafka_cfg, serde) as producer:
            relay = OutboxRelay(repo, producer, batch=3)
            assert await relay.backlog() == (5, pytest.approx(0, abs=30))
            published = 0
            while n := await relay.run_once():
                published += n
            assert published == 5
            assert (await relay.backlog())[0] == 0
        got = await tail.collect(lambda e: e.key in ids, lambda k: len(k) >= 5, 15)
    assert sorted(e.key for e in got) == sorted(ids)
    assert all(
        e.name == "shop.events.v1.OrderPlaced" and e.event_id == e.value["event_id"].__str__()
        for e in got
    )
    assert await repo.claims.count_documents({}) == 0


async def test_relay_marks_a_batch_larger_than_ferretdbs_backend_pool(repo, kafka_cfg):
    """FerretDB v1 holds a backend connection per statement of an update command until the
    command ends: a relay pass that marked 150 orders in one bulk of updates needed more
    connections than FerretDB's pool (100) and wedged it for good. The relay now deletes
    the claims of a batch with one delete per second they were written in."""
    n = 150
    for i in range(n):
        await confirmed(repo, i)
    async with scratch_topic(kafka_cfg) as topic:
        serde = AvroSerde(kafka_cfg.registry_url, auto_register=True)
        async with EventProducer(kafka_cfg, serde) as producer:
            relay = OutboxRelay(repo, producer, topic=topic, batch=n)
            # One pass claims, publishes and marks all of them; bounded, so a wedged
            # FerretDB fails here instead of hanging the run.
            assert await asyncio.wait_for(relay.run_once(), timeout=60) == n
    assert await repo.claims.count_documents({}) == 0
    assert await repo.orders.find_one({}, {"_id": 1}) is not None  # still answering


async def test_relay_killed_mid_batch_loses_nothing(repo, kafka_cfg, infra):
    """A relay process killed in the middle of a batch: it has taken its orders
    (`outbox_claims`) and is reading them (held there: the orders' table is locked in
    PostgreSQL), nothing of the batch is published yet. Once its lease is over a new relay
    publishes every event, with the ids stored with the orders."""
    orders = [await confirmed(repo, i) for i in range(40)]
    ids = {o.id for o in orders}
    stored = {  # event id -> order id, as the claims hold them before any relay ran
        unpack_entry(e)["id"]: c["order_id"]
        async for c in repo.claims.find({})
        for e in c["events"]
    }
    env = {
        **os.environ,
        "ORDER_MONGO_URL": infra.mongo_url(),
        "ORDER_MONGO_DATABASE": repo.database,
        "ORDER_KAFKA_BOOTSTRAP": kafka_cfg.bootstrap_servers,
        "ORDER_RELAY_BATCH": "10",
        "ORDER_RELAY_LEASE_S": "2",
        "ORDER_RELAY_GRACE_S": "0",
        "ORDER_LOG_LEVEL": "WARNING",
    }
    async with TopicTail(kafka_cfg) as tail:
        admin = infra.pg_admin_dsn("ferretdb")
        async with ferretdb_table_locked(admin, repo.database, "orders", "ACCESS EXCLUSIVE") as pg:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.order.outbox", env=env
            )
            try:
                taken = repo.client[repo.database]["outbox_claims"]
                for _ in range(300):  # it took a batch and waits to read its orders, <= 30 s
                    if await taken.count_documents({}) and await waiting_on_lock(pg, "SELECT"):
                        break
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail("relay never took a batch")
            finally:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            for pid in await waiting_on_lock(pg, "SELECT"):
                await pg.execute("SELECT pg_cancel_backend($1)", pid)
        left = await repo.claims.count_documents({})
        assert left == 40, "the relay published before the kill: test proves nothing"
        serde = AvroSerde(kafka_cfg.registry_url)
        async with EventProducer(kafka_cfg, serde) as producer:
            relay = OutboxRelay(repo, producer, batch=50)
            for _ in range(100):  # the dead relay's orders are free after their 2 s lease
                await relay.run_once()
                if not await repo.claims.count_documents({}):
                    break
                await asyncio.sleep(0.2)
        got = await tail.collect(lambda e: e.key in ids, lambda k: {e.key for e in k} >= ids, 20)
    by_id = {e.event_id for e in got}
    assert {e.key for e in got} == ids  # every order's OrderPlaced arrived
    assert len(by_id) == 40  # one event id per order (duplicates allowed, dedupe by id)
    assert by_id == set(stored)  # the ids stored with the orders, republished or not
    assert all(stored[e.event_id] == e.key for e in got)
    assert not await repo.claims.count_documents({})


async def test_orders_written_before_version_claims_are_moved_and_relayed(repo, kafka_cfg):
    """Documents from before version claims hold their unpublished events in
    `pending_events` (the oldest ones without even OUTBOX_FLAG): the relay flags them, moves
    the events into claims, clears the documents and publishes the events once."""
    flagged, unflagged = new_order(0), new_order(1)
    entries = {}
    for order in (flagged, unflagged):
        order.confirm([OrderLine("p-1", "Mug", 1, Money("USD", 3, 0))], order.created_at, None)
        (event,) = order.events
        entries[order.id] = event_to_doc(event)
        doc = to_doc(order) | {"pending_events": [entries[order.id]]}
        doc |= {"outbox_since": event.occurred_at, "version": 1}
        if order is flagged:
            doc[OUTBOX_FLAG] = True
        await repo.orders.insert_one(doc)
    assert await repo.flag_legacy_outbox() == 1
    assert await repo.flag_legacy_outbox() == 0
    assert await repo.migrate_legacy() == 2
    assert await repo.migrate_legacy() == 0
    for order in (flagged, unflagged):
        doc = await repo.orders.find_one({"_id": order.id})
        assert not {"pending_events", OUTBOX_FLAG, "outbox_since"} & set(doc)
        assert doc["version"] == 2 and doc["status"] == "CONFIRMED"
    async with scratch_topic(kafka_cfg) as topic, TopicTail(kafka_cfg, topic, 3) as tail:
        serde = AvroSerde(kafka_cfg.registry_url, auto_register=True)
        async with EventProducer(kafka_cfg, serde) as producer:
            assert await OutboxRelay(repo, producer, topic=topic).run_once() == 2
        got = await tail.collect(lambda e: True, lambda k: len(k) >= 2, 15)
    assert {e.event_id: e.key for e in got} == {e["id"]: i for i, e in entries.items()}
    assert await repo.claims.count_documents({}) == 0


async def test_a_dead_writers_claim_is_dropped_after_its_lease_and_a_live_one_waited_for(
    repo, kafka_cfg
):
    """A writer killed between its claim and its update leaves the claim behind: the relay
    drops it unpublished once its lease is over (its write never happened), and the order
    takes writes again. A claim within its lease (its write may still land) is left alone
    by the relay, and a writer of that order waits for it to end before writing."""
    dead, live = await confirmed(repo, 0), await confirmed(repo, 1)
    relay_repo = MongoOrders(repo.url, repo.database)
    await relay_repo.open()
    async with scratch_topic(kafka_cfg) as topic:
        serde = AvroSerde(kafka_cfg.registry_url, auto_register=True)
        async with EventProducer(kafka_cfg, serde) as producer:
            relay = OutboxRelay(relay_repo, producer, topic=topic)
            assert await relay.run_once() == 2  # their OrderPlaced
            now = dt.datetime.now(dt.UTC)
            for order, at in ((dead, now - 2 * repo.lock_lease), (live, now)):
                paid = await repo.get(order.id)
                paid.advance(OrderStatus.PAID, now, None)
                claim = {
                    "_id": claim_id(order.id, 2), "order_id": order.id, "version": 2,
                    "token": uuid.uuid4().hex, "events": [pack_entry(event_to_doc(paid.events[0]))],
                    "bucket": int(at.timestamp()), "at": at, "since": at,
                }  # fmt: skip
                await repo.claims.insert_one(claim)
            assert await relay.run_once() == 0  # nothing published: no write landed
            left = [c["order_id"] async for c in repo.claims.find({})]
            assert left == [live.id]  # the dead writer's claim is gone, the live one stays
            started = asyncio.get_running_loop().time()
            for order in (dead, live):
                paid = await repo.get(order.id)
                paid.advance(OrderStatus.PAID, dt.datetime.now(dt.UTC), None)
                assert await repo.save(paid)
            waited = asyncio.get_running_loop().time() - started
            assert waited >= repo.lock_lease.total_seconds() * 0.5  # the live claim's lease
            assert await relay.run_once() == 2  # each order's one real OrderStatusChanged
    await relay_repo.close()
    assert await repo.claims.count_documents({}) == 0
    for order in (dead, live):
        doc = await repo.orders.find_one({"_id": order.id})
        assert doc["version"] == 2 and doc["status"] == "PAID" and len(doc["writes"]) == 2
