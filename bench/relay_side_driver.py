"""The side driver of bench/relay_ab.py, run as `python -c <this file's text>` with PYTHONPATH
set to one tree (a base worktree or the new code): seeds N confirmed orders through that
tree's repository, then drains them with a fresh relay of that tree, and writes events,
seconds and CPU by part to a JSON file. It must only use what both trees have
(MongoOrders.add/save, OutboxRelay(repo, producer, topic=...), run_once, EventProducer,
AvroSerde). Not imported: it runs when executed.
"""

import asyncio
import datetime as dt
import inspect
import json
import os
import sys
import time
import uuid
from pathlib import Path

from services.order.domain import Address, LineItem, Money, Order, OrderLine, PlaceOrder
from services.order.outbox import OutboxRelay
from services.order.repository import MongoOrders
from services.runtime.kafka import AvroSerde, EventProducer, KafkaConfig

N, TOPIC, OUT, MODE, SEED = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
TICK = os.sysconf("SC_CLK_TCK")
# The stack's FerretDB, or a private one (--private-ferretdb): its URL, its PostgreSQL
# database and a string of its command line that tells its process apart.
MONGO = os.environ.get("RELAY_AB_MONGO", "mongodb://127.0.0.1:27017/")
PG_DB = os.environ.get("RELAY_AB_PG_DB", "ferretdb")
FERRET = os.environ.get("RELAY_AB_FERRET", "ferretdb-v")


def cpu(pred):
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if not pred(cmd):
                continue
            f = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except OSError:
            pass
    return total / TICK


PARTS = {
    "ferretdb": lambda c: "ferretdb-v" in c and FERRET in c,
    "pg_ferretdb": lambda c: c.startswith("postgres:") and f" {PG_DB} " in c,
    "kafka": lambda c: "kafka.Kafka" in c,
}


async def seed_bulk(repo, relay):
    # N orders and their claims as the repository writes them (its own functions), in
    # bulk, as if placed at 250/s; the relay is handed the claims as the repository would.
    from services.order.repository import Written, bucket_of, event_to_doc, pack_entry, to_doc
    from services.order.repository.claims import claim_doc

    addr = Address("Ada", "1 Main St", "Lyon", "69001", "FR")
    line = [OrderLine("p-1", "Thing", 1, Money("USD", 3, 0))]
    start = bucket_of()
    for chunk in range(0, N, 500):
        orders, claims = [], []
        for i in range(chunk, min(N, chunk + 500)):
            now = dt.datetime.now(dt.UTC)
            cmd = PlaceOrder(f"u-ab-{i % 97}", uuid.uuid4().hex, (LineItem("p-1", 1),), addr)
            order = Order.start(uuid.uuid4().hex, cmd, cmd.lines, now)
            order.confirm(line, now, None)
            token, bucket = uuid.uuid4().hex, start + i // 250
            events = [pack_entry(event_to_doc(e)) for e in order.events]
            claims.append(claim_doc(order.id, 1, token, events, bucket, now, now))
            order.version = 1
            orders.append(to_doc(order) | {"writes": [token], "outbox_bucket": bucket})
        await repo.orders.insert_many(orders)
        await repo.claims.insert_many(claims)
        if relay is not None:
            for c in claims:
                relay.enqueue(Written(c, True))


async def main():
    db = f"relay_ab_{uuid.uuid4().hex[:8]}"
    repo = MongoOrders(MONGO, db)
    await repo.open()
    # As the stack does for the order service's database (stack.ferretdb.twin_indexes):
    # GIN twins of the indexes, so equality filters find documents without a table scan.
    import stack.ferretdb

    stack.ferretdb.DATABASE = PG_DB
    stack.ferretdb.twin_indexes([db])
    addr = Address("Ada", "1 Main St", "Lyon", "69001", "FR")
    line = [OrderLine("p-1", "Thing", 1, Money("USD", 3, 0))]
    gate = asyncio.Semaphore(32)

    async def seed(i):
        async with gate:
            cmd = PlaceOrder(f"u-ab-{i % 97}", uuid.uuid4().hex, (LineItem("p-1", 1),), addr)
            order = Order.start(uuid.uuid4().hex, cmd, cmd.lines, dt.datetime.now(dt.UTC))
            assert await repo.add(order)
            order.confirm(line, dt.datetime.now(dt.UTC), None)
            for _ in range(5):  # a save too slow for its lease on a loaded machine: again
                if await repo.save(order):
                    return
            raise AssertionError(f"could not seed order {order.id}")

    cfg = KafkaConfig(bootstrap_servers="127.0.0.1:9092", registry_url="http://127.0.0.1:8085")
    serde = AvroSerde(cfg.registry_url, auto_register=True)
    try:
        relay = None
        if MODE == "memory" and "attach" in inspect.signature(OutboxRelay).parameters:
            # The order service after a Kafka outage: its relay was handed every write
            # while no producer could start, and holds them.
            from services.order.outbox import LazyProducer

            kafka_up = False

            def make():
                if not kafka_up:
                    raise ConnectionError("kafka is down")
                return EventProducer(cfg, serde)

            producer = LazyProducer(make)
            relay = OutboxRelay(repo, producer, topic=TOPIC, attach=True)
        t = time.perf_counter()
        if SEED == "bulk":
            await seed_bulk(repo, relay)
        else:
            await asyncio.gather(*(seed(i) for i in range(N)))
        seed_s = time.perf_counter() - t
        if relay is not None:
            kafka_up = True
            relay.producer = await producer.get()
        else:  # a relay started on a stored backlog (a restart; the only way before)
            producer = EventProducer(cfg, serde)
            await producer.start()
            relay = OutboxRelay(repo, producer, topic=TOPIC)
        try:
            before = {k: cpu(p) for k, p in PARTS.items()}
            me = time.process_time()
            t = time.perf_counter()
            done = 0
            while m := await relay.run_once():
                done += m
            wall = time.perf_counter() - t
            me = time.process_time() - me
            used = {k: cpu(p) - before[k] for k, p in PARTS.items()}
        finally:
            await (producer.close() if hasattr(producer, "close") else producer.stop())
        c = repo.client[db]
        left = await c["orders"].count_documents({"outbox": True})
        if "outbox" in await c.list_collection_names():
            left += await c["outbox"].count_documents({})
        return {
            "events": done,
            "seconds": wall,
            "left": left,
            "seed_s": seed_s,
            "cpu_s": {"relay": me, **used},
        }
    finally:
        await repo.client.drop_database(db)
        await repo.close()


Path(OUT).write_text(json.dumps(asyncio.run(main())))
