"""Same-run A/B of the outbox relay's marking: published events dropped from the order
documents by bulks of 8 sent one after another (base, MARK_PARALLEL=1) or a few at once
(new, services.order.outbox.MARK_PARALLEL), interleaved over rounds on the stack's FerretDB
and Kafka. Each round seeds N confirmed orders in a scratch database and drains them to a
scratch topic; events/s ratio new/base per round, median (min-max).

    python -m bench.relay_ab [--events 400] [--rounds 3]
Adds the entry "mark_parallel" to bench/results/relay_ab.json. Then "outbox_flag": the
relay's claim query over a collection of --scan-orders orders (1 in 40 with pending events),
the old `{outbox_since: {$exists: true}}` sorted and limited vs the equality `{outbox: true}`
that FerretDB v1 hands to PostgreSQL, median of 5 runs each.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
import uuid
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient

import services.order.outbox as outbox
from bench.common import BenchFailed, machine, median_range, write_result
from bench.order_bench import KAFKA, MONGO, drain, scratch_topic, seed_confirmed
from services.order.repository import OUTBOX_FLAG, MongoOrders
from services.runtime.kafka import AvroSerde, EventProducer

NEW = outbox.MARK_PARALLEL


async def one(parallel: int, events: int, producer: EventProducer, topic: str) -> float:
    db = f"relay_ab_{uuid.uuid4().hex[:8]}"
    repo = MongoOrders(MONGO, db)
    await repo.open()
    try:
        await seed_confirmed(repo, events)
        outbox.MARK_PARALLEL = parallel
        done, seconds = await drain(repo, producer, topic)
        if done != events:
            raise BenchFailed(f"relay published {done} of {events} events")
        return done / seconds
    finally:
        outbox.MARK_PARALLEL = NEW
        await repo.client.drop_database(db)  # type: ignore[union-attr]
        await repo.close()


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    rounds: list[dict[str, float]] = []
    serde = AvroSerde(KAFKA.registry_url, auto_register=True)
    async with scratch_topic() as topic, EventProducer(KAFKA, serde) as producer:
        for r in range(args.rounds):
            # Alternate which side goes first: a warming cache or a neighbour's burst
            # must not always favour the same side.
            order = [("base", 1), ("new", NEW)] if r % 2 == 0 else [("new", NEW), ("base", 1)]
            got = {side: await one(par, args.events, producer, topic) for side, par in order}
            got["ratio"] = got["new"] / got["base"]
            print(f"round {r + 1}: base {got['base']:.1f} ev/s, new {got['new']:.1f} ev/s, "
                  f"x{got['ratio']:.2f}", flush=True)  # fmt: skip
            rounds.append(got)
    return {
        "benchmark": "relay_ab",
        "changes": {
            "mark_parallel": {
                "what": f"relay marking: bulks of {outbox.MARK_CHUNK} updates, 1 at a time "
                f"(base) vs {NEW} at a time (new); FerretDB v1.24.2 on PostgreSQL, "
                f"{args.events} orders per side per round, batch 200",
                "machine": machine(),
                "events_per_s_base": median_range(r["base"] for r in rounds),
                "events_per_s_new": median_range(r["new"] for r in rounds),
                "ratio_new_vs_base": median_range(r["ratio"] for r in rounds),
                "rounds": rounds,
            }
        },
    }


def order_doc(i: int, pending: bool, now: dt.datetime) -> dict[str, Any]:
    """A stored order as MongoOrders writes it (the fields a scan has to decode)."""
    doc: dict[str, Any] = {
        "_id": uuid.uuid4().hex, "user_id": f"u-{i % 50}", "idempotency_key": uuid.uuid4().hex,
        "status": "CONFIRMED", "created_at": now, "updated_at": now, "version": 1,
        "items": [{"product_id": "p-1", "name": "Thing", "quantity": 1,
                   "unit_price": {"currency_code": "USD", "units": 3, "nanos": 0}}],
        "shipping_address": {"recipient_name": "Ada", "line1": "1 Main St", "city": "Lyon",
                             "postal_code": "69001", "country_code": "FR"},
        "pending_events": [],
    }  # fmt: skip
    if pending:
        doc["pending_events"] = [{"id": uuid.uuid4().hex, "type": "x", "occurred_at": now}]
        doc |= {"outbox_since": now, OUTBOX_FLAG: True}
    return doc


async def claim_query_ab(orders: int) -> dict[str, Any]:
    client = AsyncIOMotorClient(MONGO, tz_aware=True)
    db = client[f"relay_scan_{uuid.uuid4().hex[:8]}"]
    col = db["orders"]
    now = dt.datetime.now(dt.UTC)
    try:
        for start in range(0, orders, 500):
            await col.insert_many(
                [order_doc(i, i % 40 == 0, now) for i in range(start, min(orders, start + 500))]
            )
        queries = {
            "base": lambda: (
                col.find({"outbox_since": {"$exists": True}}, {"_id": 1})
                .sort("outbox_since", 1)
                .limit(200)
            ),
            "new": lambda: col.find({OUTBOX_FLAG: True}, {"outbox_since": 1}),
        }
        ms: dict[str, list[float]] = {"base": [], "new": []}
        found: dict[str, int] = {}
        for _ in range(5):
            for side, query in queries.items():
                t = time.perf_counter()
                found[side] = len([d async for d in query()])
                ms[side].append((time.perf_counter() - t) * 1000)
        if found["base"] != found["new"]:
            raise BenchFailed(f"the queries disagree: {found}")
        base, new = statistics.median(ms["base"]), statistics.median(ms["new"])
        return {
            "what": f"the relay's claim query over {orders} orders, {found['new']} pending",
            "machine": machine(),
            "ms_base": round(base, 1),
            "ms_new": round(new, 1),
            "speedup_new_vs_base": round(base / new, 1),
        }
    finally:
        await client.drop_database(db.name)
        client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scan-orders", type=int, default=8000)
    args = ap.parse_args()
    result = asyncio.run(bench(args))
    result["changes"]["outbox_flag"] = asyncio.run(claim_query_ab(args.scan_orders))
    print(f"wrote {write_result('relay_ab', result)}")


if __name__ == "__main__":
    main()
