"""The relay leg of bench/order_bench.py: a backlog of confirmed orders (their claims are the
outbox) in a scratch FerretDB database, drained by the outbox relay to a private topic, beside
the same events sent by aiokafka's and confluent-kafka's producers alone (events/s each)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.order_fixtures import KAFKA, MONGO, seed_confirmed
from services.order.outbox import OutboxRelay, to_record
from services.order.repository import MongoOrders, unpack_entry
from services.runtime.kafka import AvroSerde, EventProducer


@contextlib.asynccontextmanager
async def scratch_topic() -> AsyncIterator[str]:
    """A private 6-partition topic; it and its auto-registered subject go afterwards."""
    topic = f"bench.orders.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": KAFKA.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(timeout=20)
    try:
        yield topic
    finally:
        admin.delete_topics([topic])[topic].result(timeout=20)
        for suffix in ("", "?permanent=true"):
            req = urllib.request.Request(
                f"{KAFKA.registry_url}/subjects/{topic}-shop.events.v1.OrderPlaced{suffix}",
                method="DELETE",
            )
            with contextlib.suppress(Exception):
                await asyncio.to_thread(urllib.request.urlopen, req, timeout=5)


async def drain(repo: MongoOrders, producer: EventProducer, topic: str) -> tuple[int, float]:
    """Relay passes until the outbox is empty: (events published, seconds)."""
    relay = OutboxRelay(repo, producer, topic=topic, batch=200)
    t = time.perf_counter()
    done = 0
    while m := await relay.run_once():
        done += m
    return done, time.perf_counter() - t


async def bench_relay(n: int) -> dict[str, object]:
    db = f"order_bench_{uuid.uuid4().hex[:8]}"
    repo = MongoOrders(MONGO, db)
    await repo.open()
    serde = AvroSerde(KAFKA.registry_url, auto_register=True)
    out: dict[str, object] = {"events": n}
    try:
        async with scratch_topic() as topic:
            t = time.perf_counter()
            await seed_confirmed(repo, n)
            out["seed_orders_per_s"] = round(n / (time.perf_counter() - t), 1)
            claims = [c async for c in repo.claims.find({})]  # the outbox, before the drain
            entries = [(c["order_id"], unpack_entry(e)) for c in claims for e in c["events"]]
            async with EventProducer(KAFKA, serde) as producer:
                done, wall = await drain(repo, producer, topic)
                out["relay_events_per_s"] = round(done / wall, 1)
                out["relay_published"] = done

                t = time.perf_counter()
                futs = [
                    await producer.send(topic, to_record(e), key=k, event_id=e["id"])
                    for k, e in entries
                ]
                await asyncio.gather(*futs)
                out["aiokafka_producer_only_events_per_s"] = round(
                    len(entries) / (time.perf_counter() - t), 1
                )
            values = [(k, await serde.encode(topic, to_record(e)), e["id"]) for k, e in entries]
            p = Producer(
                {"bootstrap.servers": KAFKA.bootstrap_servers, "enable.idempotence": True,
                 "acks": "all", "linger.ms": 5}
            )  # fmt: skip
            t = time.perf_counter()
            for k, v, eid in values:
                while True:
                    try:
                        p.produce(topic, v, k.encode(), headers=[("event_id", eid.encode())])
                        break
                    except BufferError:
                        p.poll(0.01)
                p.poll(0)
            p.flush(30)
            out["confluent_producer_only_events_per_s"] = round(
                len(values) / (time.perf_counter() - t), 1
            )
    finally:
        await repo.client.drop_database(db)  # type: ignore[union-attr]
        await repo.close()
    return out
