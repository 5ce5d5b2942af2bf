"""What an OrderPlaced event costs the recommendation service: CPU per event of its
process and of the primary's backends for its database, and events/s, draining a backlog,
with each event in its own transaction (RECOMMENDATION_TX_EVENTS=1) against a poll's events
of a partition in one (the default), alternating runs.

N OrderPlaced records (3 products each, from a pool of 60: 6 co-purchase rows per order)
are published to a private topic first (the backlog); then a private recommendation
process (one worker, the stack's database, its own consumer group, spare ports) is started
on that topic and timed from its metrics answering (start-up CPU left out) until every
event is counted (its `recommendation_order_events` metric). Its idle CPU rate (3 s after
the drain) times the drain's duration is subtracted. `counted_twice` reports events counted
beyond N (0 expected).

    python -m bench.recommendation_events [--events 1000] [--rounds 2] [--tx-events 200]
Writes bench/results/recommendation_events.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from bench.common import BenchFailed, free_port, proc_cpu_s, run_main, write_result
from bench.order_cost import stack_cpu
from services.runtime.kafka import AvroSerde, EventProducer, KafkaConfig
from shop.events import v1 as events
from shop.topology import REGISTRY_URL
from stack import kafka


def order(rnd: random.Random) -> events.OrderPlaced:
    price = events.Money(currency_code="USD", units=2, nanos=0)
    picks = rnd.sample([f"bench-p-{i:02d}" for i in range(60)], 3)
    return events.OrderPlaced(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), order_id=uuid.uuid4().hex,
        user_id="u-bench", lines=[events.OrderLine(p, "Thing", 1, price) for p in picks],
        total=price, shipping_city="Lyon",
    )  # fmt: skip


def counted(metrics_port: int) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read()
    except OSError:
        return -1.0
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith("recommendation_order_events_total{") and 'outcome="counted"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def start(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services.recommendation.main"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def one_run(events_n: int, tx_events: int) -> dict[str, Any]:
    bootstrap = kafka.bootstrap_servers()
    topic = f"bench.rec.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(n, 3, 1) for n in (topic, f"{topic}.dlq")]).values():
        fut.result(timeout=20)
    metrics_port = free_port()
    env = {
        **os.environ, "SHOPMESH_ENV": "dev", "RECOMMENDATION_GRPC_PORT": str(free_port()),
        "RECOMMENDATION_METRICS_PORT": str(metrics_port), "RECOMMENDATION_WORKERS": "1",
        "RECOMMENDATION_ORDERS_TOPIC": topic, "RECOMMENDATION_ACCESS_LOG": "off",
        "RECOMMENDATION_GROUP_ID": f"bench-{uuid.uuid4().hex[:8]}",
        "RECOMMENDATION_TX_EVENTS": str(tx_events),
    }  # fmt: skip
    rnd = random.Random(7)
    cfg = KafkaConfig(bootstrap_servers=bootstrap, registry_url=REGISTRY_URL)
    async with EventProducer(cfg, AvroSerde(REGISTRY_URL, auto_register=True)) as producer:
        for i in range(0, events_n, 100):  # the backlog, before the consumer starts
            recs = [order(rnd) for _ in range(min(100, events_n - i))]
            await asyncio.gather(*(
                producer.publish(topic, r, key=r.order_id, event_id=str(r.event_id)) for r in recs
            ))  # fmt: skip
    proc = start(env)
    try:
        deadline = time.monotonic() + 30
        while (before := counted(metrics_port)) < 0:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise BenchFailed("the recommendation process did not come up")
            await asyncio.sleep(0.05)
        cpu0, t0 = proc_cpu_s(proc.pid), time.monotonic()  # start-up CPU left out
        pg0 = stack_cpu().get("pg-primary:recommendation", 0.0)
        deadline = time.monotonic() + 300
        while counted(metrics_port) < events_n:
            if time.monotonic() > deadline:
                raise BenchFailed(f"only {counted(metrics_port)} of {events_n} counted")
            await asyncio.sleep(0.05)
        seconds = time.monotonic() - t0
        cpu = proc_cpu_s(proc.pid) - cpu0
        pg = stack_cpu().get("pg-primary:recommendation", 0.0) - pg0
        idle0, t_idle = proc_cpu_s(proc.pid), time.monotonic()
        await asyncio.sleep(3)  # drained: its idle polling rate, subtracted below
        idle_per_s = (proc_cpu_s(proc.pid) - idle0) / (time.monotonic() - t_idle)
        cpu -= idle_per_s * seconds
        twice = counted(metrics_port) - events_n
    finally:
        proc.terminate()
        proc.wait(10)
        admin.delete_topics([topic, f"{topic}.dlq"])
    events_n -= int(before)  # counted before the window opened (usually none)
    return {
        "tx_events": tx_events,
        "events": events_n,
        "seconds_to_drain": round(seconds, 2),
        "events_per_s": round(events_n / seconds, 1),
        "service_cpu_us_per_event": round(cpu * 1e6 / events_n, 1),
        "pg_cpu_us_per_event": round(pg * 1e6 / events_n, 1),
        "service_idle_cpu_ms_per_s": round(idle_per_s * 1000, 2),
        "counted_twice": twice,
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for _ in range(args.rounds):
        for tx in (1, args.tx_events):
            runs.append(await one_run(args.events, tx))
    keys = ("events_per_s", "service_cpu_us_per_event", "pg_cpu_us_per_event")

    def med(tx: int) -> dict[str, float]:
        return {k: statistics.median(r[k] for r in runs if r["tx_events"] == tx) for k in keys}

    each, batched = med(1), med(args.tx_events)
    return {
        "what": "OrderPlaced (3 products) -> co-purchase counts: a backlog drained by one "
        "recommendation process, each event in its own transaction (RECOMMENDATION_TX_EVENTS"
        "=1) vs a poll's events of a partition together (the default), alternating runs; CPU "
        "per event of the process (idle rate subtracted) and of the primary's backends for "
        "its database",
        "params": vars(args),
        "runs": runs,
        "median_tx_1": each,
        f"median_tx_{args.tx_events}": batched,
        "ratio_batched_over_each": {k: round(batched[k] / each[k], 2) for k in keys if each[k]},
        "counted_twice": sum(r["counted_twice"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tx-events", type=int, default=200)
    args = parser.parse_args()
    result = run_main(bench(args))
    print(write_result("recommendation_events", result))
    print({k: v for k, v in result.items() if k not in ("what", "params", "runs")})


if __name__ == "__main__":
    main()
