"""Same-run A/B of the outbox relay's marking: published events dropped from the order
documents by bulks of 8 sent one after another (base, MARK_PARALLEL=1) or a few at once
(new, services.order.outbox.MARK_PARALLEL), interleaved over rounds on the stack's FerretDB
and Kafka. Each round seeds N confirmed orders in a scratch database and drains them to a
scratch topic; events/s ratio new/base per round, median (min-max).

    python -m bench.relay_ab [--events 400] [--rounds 3]
Adds the entry "mark_parallel" to bench/results/relay_ab.json.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from typing import Any

import services.order.outbox as outbox
from bench.common import BenchFailed, machine, median_range, write_result
from bench.order_bench import KAFKA, MONGO, drain, scratch_topic, seed_confirmed
from services.order.repository import MongoOrders
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    result = asyncio.run(bench(ap.parse_args()))
    print(f"wrote {write_result('relay_ab', result)}")


if __name__ == "__main__":
    main()
