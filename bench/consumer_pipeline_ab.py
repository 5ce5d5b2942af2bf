"""Same-run A/B of what a consumer of the runtime's ordered pipeline costs per record and per
idle second, in its own process and in Kafka, with the pipeline's FetchPolicy against
aiokafka's fetch defaults (min 1 byte, 500 ms: one fetch per record at these rates).

Private: a new 6-partition topic (as shop.orders.v1) fed at each `--rates` (OrderPlaced
events, Avro via the stack's registry; rate 0 = idle), and for each side a child process
running `--groups` OrderedConsumer loops, each its own consumer group (as cart,
recommendation and notification are three groups on one topic), whose handler only notes
each record's age (record timestamp -> handled). Per round and rate, three windows one
after the other: side base alone, side new alone (ABBA across rounds), and no consumer at
all; Kafka's CPU over a side's window minus its CPU in the no-consumer window is what that
side's consumers cost the broker (the producer's share and the machine's other Kafka users
cancel). A child's CPU is its own process_time over the window. Offset commits: records
appended to __consumer_offsets (one per partition per commit). Other engineers' Kafka use
is noise in the broker figures; the consumers' own figures are clean.

Results: bench/results/consumer_pipeline_ab.json under `--change`.

    python -m bench.consumer_pipeline_ab --change NAME [--rates 0,5,40] [--groups 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Mapping
from typing import Any

from bench.common import ROOT, git_head, machine, median_range, percentile, record_entry, run_main
from bench.consumer_fetch_ab import commit_records
from bench.stack_counters import stack_cpu

REGISTRY = "http://127.0.0.1:8085"
BOOTSTRAP = "127.0.0.1:9092"
PARTITIONS = 6
BASE_FETCH = {"fetch_max_wait_ms": 500, "fetch_min_bytes": 1}  # aiokafka's defaults


# ---------------------------------------------------------------- the child (one side)


class _Ages:
    """The pipeline handler: notes each record's age when applied."""

    def __init__(self) -> None:
        self.ages: list[float] = []

    def decode(self, ev: Any) -> float:
        return ev.timestamp_ms / 1000

    async def apply(self, events: list[float]) -> Mapping[str, int]:
        now = time.time()
        self.ages += [now - t for t in events]
        return {"applied": len(events)}


def _count_requests(consumer: Any, counts: dict[str, int]) -> None:
    """Count the pipeline's offset commits (one request each)."""
    commit = consumer.commit_offsets

    async def counted_commit(offsets: Any) -> None:
        counts["commit"] += 1
        await commit(offsets)

    consumer.commit_offsets = counted_commit


def _count_fetches(counts: dict[str, int]) -> None:
    """Count the fetch requests aiokafka's fetchers send (every consumer of the process)."""
    from aiokafka.consumer.fetcher import Fetcher

    send = Fetcher._proc_fetch_request

    async def counted(self: Any, *args: Any) -> Any:
        counts["fetch"] += 1
        return await send(self, *args)

    Fetcher._proc_fetch_request = counted  # type: ignore[method-assign]


async def child(args: argparse.Namespace) -> None:
    from prometheus_client import CollectorRegistry

    from services.runtime.kafka import AvroSerde, EventConsumer, EventProducer, KafkaConfig
    from services.runtime.kafka.pipeline import PIPELINE_FETCH, ConsumerMetrics, OrderedConsumer

    cfg = KafkaConfig(bootstrap_servers=BOOTSTRAP, registry_url=REGISTRY)
    fetch = BASE_FETCH if args.side == "base" else PIPELINE_FETCH.options(cfg)
    serde = AvroSerde(REGISTRY)
    producer = EventProducer(cfg, serde)
    await producer.start()
    handler = _Ages()
    requests = {"fetch": 0, "commit": 0}
    _count_fetches(requests)
    loops = []
    for i in range(args.groups):
        group = f"bench.fetch.{args.tag}.{args.side}.{i}"
        consumer = EventConsumer(
            cfg, serde, [args.topic], group_id=group, auto_offset_reset="latest", **fetch
        )
        _count_requests(consumer, requests)
        await consumer.start()
        loops.append(
            OrderedConsumer(
                consumer,
                producer,
                handler,
                ConsumerMetrics(CollectorRegistry(), "bench_event", args.topic, "applied"),
                dlq_topic=f"{args.topic}.dlq",
                group_id=group,
            )
        )
    tasks = [asyncio.create_task(p.run()) for p in loops]
    for p in loops:
        await p.ready.wait()
    while not all(p.consumer.raw.assignment() for p in loops):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)  # positions resolved
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # "go"
    cpu0, handler.ages = time.process_time(), []
    counted = dict(requests)
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop"
    cpu = time.process_time() - cpu0
    counted = {k: requests[k] - counted[k] for k in requests}
    ages = sorted(handler.ages)
    for p in loops:
        p.stop()
    await asyncio.gather(*tasks)
    for p in loops:
        await p.consumer.stop()
    await producer.stop()
    print(
        json.dumps(
            {
                "cpu_s": cpu,
                "fetch_requests": counted["fetch"],
                "commit_requests": counted["commit"],
                "records": len(ages),
                "age_p50_ms": round(percentile(ages, 50) * 1000, 1),
                "age_p99_ms": round(percentile(ages, 99) * 1000, 1),
            }
        ),
        flush=True,
    )


# ---------------------------------------------------------------- the parent


def make_topic() -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    name = f"bench.fetch.{uuid.uuid4().hex[:10]}"
    for fut in admin.create_topics([NewTopic(name, PARTITIONS, 1)]).values():
        fut.result(timeout=20)
    return name


def drop_topic(name: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for fut in admin.delete_topics([name]).values():
        fut.exception(timeout=20)
    for suffix in ("", "?permanent=true"):
        req = urllib.request.Request(
            f"{REGISTRY}/subjects/{name}-shop.events.v1.OrderPlaced{suffix}", method="DELETE"
        )
        with contextlib.suppress(Exception):  # already gone
            urllib.request.urlopen(req, timeout=5).close()


async def produce(topic: str, rate: float, seconds: float) -> int:
    """OrderPlaced events at `rate` for `seconds` (keys spread over the partitions)."""
    from services.runtime.kafka import AvroSerde, EventProducer, KafkaConfig
    from shop.events.v1 import Money, OrderLine, OrderPlaced

    if rate <= 0:
        await asyncio.sleep(seconds)
        return 0
    cfg = KafkaConfig(bootstrap_servers=BOOTSTRAP, registry_url=REGISTRY)
    price = Money(currency_code="USD", units=12, nanos=500_000_000)
    sent = 0
    async with EventProducer(cfg, AvroSerde(REGISTRY, auto_register=True)) as producer:
        t0 = time.perf_counter()
        acks = []
        for i in range(int(rate * seconds)):
            if (delay := t0 + i / rate - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            event = OrderPlaced(
                event_id=uuid.uuid4(), occurred_at=dt.datetime.now(dt.UTC),
                order_id=f"o-{i}", user_id=f"u-{i % 97}",
                lines=[OrderLine(product_id="p-1", product_name="Mug", quantity=2,
                                 unit_price=price)],
                total=Money(currency_code="USD", units=25, nanos=0),
                shipping_city="Lyon", shipping_country_code="FR",
            )  # fmt: skip
            acks.append(
                await producer.send(topic, event, key=event.order_id, event_id=str(event.event_id))
            )
            sent += 1
        await asyncio.gather(*acks)
        if (rest := t0 + seconds - time.perf_counter()) > 0:
            await asyncio.sleep(rest)
    return sent


def window(side: str, topic: str, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    proc = None
    if side != "none":
        cmd = [sys.executable, "-m", "bench.consumer_pipeline_ab", "--child", "--side", side,
               "--topic", topic, "--groups", str(args.groups),
               "--tag", uuid.uuid4().hex[:8]]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)  # fmt: skip
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != "ready":
            proc.kill()
            raise RuntimeError(f"side {side} did not start")
        proc.stdin.write("go\n")
        proc.stdin.flush()
    else:
        time.sleep(3)
    k0, c0, t0 = commit_records(), stack_cpu().get("kafka", 0.0), time.time()
    try:
        sent = run_main(produce(topic, rate, args.seconds))
    except BaseException:
        if proc is not None:
            proc.kill()
        raise
    time.sleep(args.settle)
    wall = time.time() - t0
    kafka_s = stack_cpu().get("kafka", 0.0) - c0
    commits = commit_records() - k0
    out: dict[str, Any] = {"side": side, "rate_per_s": rate, "sent": sent, "wall_s": wall,
                           "kafka_cpu_s": kafka_s, "commit_records": commits}  # fmt: skip
    if proc is not None:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        proc.wait(timeout=30)
        out.update(json.loads(line))
    return out


def kafka_pid() -> int | None:
    from stack.model import state_dir

    try:
        return int(json.loads((state_dir() / "run" / "kafka.pid").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def steady_window(side: str, topic: str, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    """window(), again when the shared Kafka was restarted meanwhile (other engineers' outage
    tests do that): such a window's broker CPU and the consumers' work mean nothing."""
    for attempt in range(4):
        before = kafka_pid()
        try:
            w = window(side, topic, rate, args)
        except Exception as exc:
            if attempt == 3:
                raise
            print(f"window {side} {rate:g}/s failed ({exc!r:.200}); again", flush=True)
            time.sleep(20)
            continue
        if kafka_pid() == before and before is not None and w["kafka_cpu_s"] >= 0:
            return w
        print(f"window {side} {rate:g}/s: Kafka restarted meanwhile; again", flush=True)
        time.sleep(20)
    raise RuntimeError("Kafka kept restarting")


def summarize(windows: list[dict[str, Any]], rates: list[float], groups: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rate in rates:
        rows = [w for w in windows if w["rate_per_s"] == rate]
        nones = [w for w in rows if w["side"] == "none"]
        entry: dict[str, Any] = {}
        for side in ("base", "new"):
            ws = [w for w in rows if w["side"] == side]
            pairs = list(zip(ws, nones, strict=False))
            kafka = [(w["kafka_cpu_s"] / w["wall_s"] - n["kafka_cpu_s"] / n["wall_s"]) * 1000
                     for w, n in pairs]  # fmt: skip
            commits = [(w["commit_records"] / w["wall_s"] - n["commit_records"] / n["wall_s"])
                       for w, n in pairs]  # fmt: skip
            per_s = {
                "consumer_ms_per_s": median_range(w["cpu_s"] / w["wall_s"] * 1000 for w in ws),
                "fetches_per_s": median_range(
                    w.get("fetch_requests", float("nan")) / w["wall_s"] for w in ws
                ),
                "kafka_ms_per_s": median_range(kafka),
                "offset_commit_records_per_s": median_range(commits),
            }
            if rate > 0:
                recs = [w["sent"] * groups for w in ws]
                per_s["consumer_us_per_record"] = median_range(
                    w["cpu_s"] / r * 1e6 for w, r in zip(ws, recs, strict=True)
                )
                per_s["kafka_us_per_record"] = median_range(
                    k / 1000 * w["wall_s"] / r * 1e6
                    for k, w, r in zip(kafka, ws, recs, strict=False)
                )
                per_s["fetches_per_record"] = median_range(
                    w.get("fetch_requests", float("nan")) / r for w, r in zip(ws, recs, strict=True)
                )
                per_s["commits_per_record"] = median_range(
                    w.get("commit_requests", float("nan")) / r
                    for w, r in zip(ws, recs, strict=True)
                )
                per_s["age_p50_ms"] = median_range(w["age_p50_ms"] for w in ws)
                per_s["age_p99_ms"] = median_range(w["age_p99_ms"] for w in ws)
            entry[side] = per_s
        entry["none_kafka_ms_per_s"] = median_range(
            n["kafka_cpu_s"] / n["wall_s"] * 1000 for n in nones
        )
        out[f"{rate:g}/s"] = entry
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--change", help="name of this A/B in the results file")
    p.add_argument("--rates", default="0,5,40", help="records per second (0: idle)")
    p.add_argument("--groups", type=int, default=4, help="consumer groups per side")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--note", default="")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("--topic", help=argparse.SUPPRESS)
    p.add_argument("--tag", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        run_main(child(args))
        return
    if not args.change:
        p.error("--change is required")
    rates = [float(r) for r in args.rates.split(",")]
    topic = make_topic()
    windows = []
    try:
        for r in range(args.rounds):
            for rate in rates:
                for side in ("base", "new", "none") if r % 2 == 0 else ("new", "base", "none"):
                    w = steady_window(side, topic, rate, args)
                    windows.append(w)
                    print(json.dumps(w), flush=True)
    finally:
        drop_topic(topic)
    entry = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": git_head(),
        "what": __doc__.split("\n\n")[0].replace("\n", " "),
        "note": args.note,
        "settings": {
            "rates_per_s": rates,
            "groups": args.groups,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "settle_s": args.settle,
            "base_fetch": BASE_FETCH,
        },
        "machine": machine(),
        **summarize(windows, rates, args.groups),
        "windows": windows,
    }
    path = record_entry("consumer_pipeline_ab", "changes", args.change, entry)
    print(f"wrote {path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", f"{ROOT}:{ROOT / 'gen' / 'python'}")
    main()
