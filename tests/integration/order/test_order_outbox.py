"""The order repository and outbox relay against real FerretDB, Kafka and the registry:
versioned saves under concurrency, events published once per id, a relay killed mid-batch
loses nothing. Each module uses its own database, so the order service's relay (database
`order`) never publishes these orders."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
import uuid

import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from services.order.domain import Address, LineItem, Money, Order, OrderLine, PlaceOrder
from services.order.outbox import OutboxRelay
from services.order.repository import OUTBOX_FLAG, MongoOrders
from services.runtime.kafka import AvroSerde, EventProducer
from tests.integration.order.order_helpers import TopicTail, scratch_topic

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
    assert doc["version"] == 1 and len(doc["pending_events"]) == 1


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
    assert await repo.orders.count_documents({"outbox_since": {"$exists": True}}) == 0


async def test_relay_marks_a_batch_larger_than_ferretdbs_backend_pool(repo, kafka_cfg):
    """FerretDB v1 holds a backend connection per statement of an update command until the
    command ends: a relay pass that marked 150 orders in one bulk needed more connections
    than FerretDB's pool (100) and wedged it for good. The relay sends small bulks."""
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
    assert await repo.orders.count_documents({"outbox_since": {"$exists": True}}) == 0
    assert await repo.orders.find_one({}, {"_id": 1}) is not None  # still answering


async def test_relay_killed_mid_batch_loses_nothing(repo, kafka_cfg, infra):
    orders = [await confirmed(repo, i) for i in range(40)]
    ids = {o.id for o in orders}
    stored = {  # event id -> order id, as the documents hold them before any relay ran
        e["id"]: d["_id"]
        async for d in repo.orders.find({}, {"pending_events": 1})
        for e in d["pending_events"]
    }
    env = {
        **os.environ,
        "ORDER_MONGO_URL": infra.mongo_url(),
        "ORDER_MONGO_DATABASE": repo.database,
        "ORDER_KAFKA_BOOTSTRAP": kafka_cfg.bootstrap_servers,
        "ORDER_RELAY_BATCH": "10",
        "ORDER_RELAY_LEASE_S": "2",
        "ORDER_LOG_LEVEL": "WARNING",
    }
    async with TopicTail(kafka_cfg) as tail:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.order.outbox", env=env
        )
        try:
            claims = repo.client[repo.database]["outbox_claims"]
            for _ in range(300):  # until it holds a claim (mid-batch), at most 30 s
                if await claims.count_documents({}) > 0:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("relay never claimed a batch")
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        left = await repo.orders.count_documents({"outbox_since": {"$exists": True}})
        assert left > 0, "the relay finished before the kill: test proves nothing"
        serde = AvroSerde(kafka_cfg.registry_url)
        async with EventProducer(kafka_cfg, serde) as producer:
            relay = OutboxRelay(repo, producer, batch=50)
            for _ in range(100):  # the dead relay's claims expire after their 2 s lease
                await relay.run_once()
                if not await repo.orders.count_documents({"outbox_since": {"$exists": True}}):
                    break
                await asyncio.sleep(0.2)
        got = await tail.collect(lambda e: e.key in ids, lambda k: {e.key for e in k} >= ids, 20)
    by_id = {e.event_id for e in got}
    assert {e.key for e in got} == ids  # every order's OrderPlaced arrived
    assert len(by_id) == 40  # one event id per order (duplicates allowed, dedupe by id)
    assert by_id == set(stored)  # the ids stored with the orders, republished or not
    assert all(stored[e.event_id] == e.key for e in got)
    assert not await repo.orders.count_documents({"outbox_since": {"$exists": True}})


async def test_orders_written_before_the_outbox_flag_are_flagged_and_relayed(repo, kafka_cfg):
    """Documents from before OUTBOX_FLAG have only `outbox_since`: the relay flags them (in
    the background, once) and then publishes them like any other."""
    order = await confirmed(repo, 0)
    await repo.orders.update_one({"_id": order.id}, {"$unset": {OUTBOX_FLAG: ""}})
    assert await repo.flag_legacy_outbox() == 1
    assert await repo.flag_legacy_outbox() == 0
    async with scratch_topic(kafka_cfg) as topic:
        serde = AvroSerde(kafka_cfg.registry_url, auto_register=True)
        async with EventProducer(kafka_cfg, serde) as producer:
            assert await OutboxRelay(repo, producer, topic=topic).run_once() == 1
    doc = await repo.orders.find_one({"_id": order.id})
    assert OUTBOX_FLAG not in doc and "outbox_since" not in doc


async def test_relay_takes_over_order_locks_of_a_killed_holder(repo, kafka_cfg):
    """A process killed while holding order locks leaves them behind. A lock whose lease is
    over is taken over (the relay once skipped such orders forever, republishing their
    events on every pass); a live lock is still respected."""
    stale, held = await confirmed(repo, 0), await confirmed(repo, 1)
    now = dt.datetime.now(dt.UTC)
    await repo.locks.insert_many(
        [
            {"_id": stale.id, "owner": "killed", "until": now - dt.timedelta(seconds=1)},
            {"_id": held.id, "owner": "alive", "until": now + dt.timedelta(minutes=5)},
        ]
    )
    async with scratch_topic(kafka_cfg) as topic:
        serde = AvroSerde(kafka_cfg.registry_url, auto_register=True)
        async with EventProducer(kafka_cfg, serde) as producer:
            assert await OutboxRelay(repo, producer, topic=topic).run_once() == 1
    assert OUTBOX_FLAG not in await repo.orders.find_one({"_id": stale.id})
    assert (await repo.orders.find_one({"_id": held.id}))[OUTBOX_FLAG] is True
    assert await repo.locks.find_one({"_id": stale.id}) is None  # released after the mark
    assert (await repo.locks.find_one({"_id": held.id}))["owner"] == "alive"
