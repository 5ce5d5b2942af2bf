"""Same-run A/B of what the OrderPlaced consumers (cart, recommendation, notification) and
Kafka cost per order and per idle second, with the consumers' fetch policy (FetchPolicy in
services/runtime/kafka/config.py) against aiokafka's defaults.

Side `base` restarts the stack's cart, recommendation and notification with
<SERVICE>_KAFKA_FETCH_MAX_WAIT_MS=500 and _FETCH_MIN_BYTES=1 (aiokafka's defaults: what every
consumer used before the policy, one fetch per record at these rates); side `new` restarts
them without (the policy: cart and recommendation 1 s / 64 KiB, notification stage 0 250 ms /
64 KiB; its retry stages keep the defaults since 490beae). Sides alternate within each round
(ABBA), on the running stack:

- idle window: the stack's own processes' CPU (bench/stack_counters.stack_cpu) over
  `--idle` seconds with no load of ours, per second;
- load window: bench/order_cost's load child places orders at each `--rates` for
  `--seconds` (direct gRPC to the stack's order service, tailing shop.orders.v1), then
  waits `--settle`; CPU per order of each part, net of its idle rate;
- offset commits: records appended to __consumer_offsets (one per partition committed) per
  idle second and per order;
- latency: notification's own histogram notification_event_to_email_seconds (record
  timestamp -> email sent) over the window, its p50/p99 by bucket upper bound.

Other engineers' load on the shared stack lands in both sides alike (interleaved), which is
why the ratios, not the absolute figures, are the result. Writes
bench/results/consumer_fetch_ab.json (`--change` names the entry); the services are left
running the policy (no env) at the end.

    python -m bench.consumer_fetch_ab --change NAME [--rounds 2] [--rates 40,5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import ROOT, BenchFailed, git_head, machine, median_range, record_entry, run_main
from bench.order_cost import make_fixtures
from bench.stack_counters import stack_cpu
from shop.topology import SERVICES

CONSUMERS = ("cart", "recommendation", "notification")
PARTS = ("kafka", *CONSUMERS, "pg-primary:cart", "pg-primary:recommendation",
         "pg-primary:notification", "smtp-sink")  # fmt: skip
BASE_ENV = {
    f"{s.upper()}_KAFKA_{k}": v
    for s in CONSUMERS
    for k, v in (("FETCH_MAX_WAIT_MS", "500"), ("FETCH_MIN_BYTES", "1"))
}
HIST = "notification_event_to_email_seconds_bucket"
_BUCKET = re.compile(r"^" + HIST + r'\{le="([^"]+)",topic="shop\.orders\.v1"\} ([\d.e+]+)')


def restart(side: str) -> None:
    """The three consumers restarted with the side's environment, then given time to join
    their groups and settle."""
    env = {k: v for k, v in os.environ.items() if k not in BASE_ENV}
    if side == "base":
        env.update(BASE_ENV)
    only = ",".join(CONSUMERS)
    for attempt in range(3):  # the shared Kafka may be restarting under someone else's test
        for verb in ("down", "up"):
            proc = subprocess.run(
                [sys.executable, "-m", "stack", verb, "--only", only],
                cwd=ROOT, env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                break
        if proc.returncode == 0:
            break
        if attempt == 2:
            raise BenchFailed(f"stack {verb} {only}: {proc.stderr[-600:]}")
        time.sleep(15)
    time.sleep(8)


def commit_records() -> int:
    """Records in __consumer_offsets so far (each offset commit appends one per partition)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def ends() -> int:
        c = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9092")
        await c.start()
        try:
            await c._client.force_metadata_update()
            parts = c.partitions_for_topic("__consumer_offsets") or set()
            got = await c.end_offsets([TopicPartition("__consumer_offsets", p) for p in parts])
            return sum(got.values())
        finally:
            # aiokafka's stop cancels its own commit-reset task, which can surface here.
            with contextlib.suppress(BaseException):
                await c.stop()

    return int(asyncio.run(ends()))


def email_buckets() -> dict[float, float]:
    """notification's event -> email histogram (shop.orders.v1): cumulative count per bound."""
    port = SERVICES["notification"].metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = _BUCKET.match(line)
        if m:
            out[float(m.group(1))] = float(m.group(2))
    return out


def bucket_percentile(before: dict[float, float], after: dict[float, float], p: float) -> float:
    """The upper bound (ms) of the bucket holding the p-th percentile of the window's emails."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return float("nan")
    for b, c in zip(bounds, counts, strict=True):
        if c >= counts[-1] * p / 100:
            return b * 1000
    return float("inf")


def window(side: str, rate: float, args: argparse.Namespace, fx: dict[str, Any]) -> dict:
    c0, k0 = stack_cpu(), commit_records()
    t0 = time.time()
    time.sleep(args.idle)
    idle_s = time.time() - t0
    c1, k1 = stack_cpu(), commit_records()
    idle = {p: (c1.get(p, 0.0) - c0.get(p, 0.0)) / idle_s for p in c1}
    h0 = email_buckets()
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        cmd = [
            sys.executable, "-m", "bench.order_cost", "--load", "--rate", str(rate),
            "--seconds", str(args.seconds), "--settle", str(args.settle), "--out", out.name,
            "--fixtures", json.dumps(fx),
        ]  # fmt: skip
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        load_s = time.time() - t0
        if proc.returncode != 0:
            raise BenchFailed(f"load failed: {proc.stderr[-800:]}")
        placed = json.loads(Path(out.name).read_text())
    c2, k2 = stack_cpu(), commit_records()
    h1 = email_buckets()
    orders = placed["orders"]
    per_order = {
        p: (c2.get(p, 0.0) - c1.get(p, 0.0) - idle.get(p, 0.0) * load_s) / orders * 1000 for p in c2
    }
    return {
        "side": side,
        "rate_per_s": rate,
        "orders": orders,
        "idle_ms_per_s": {p: round(v * 1000, 2) for p, v in idle.items()},
        "cpu_ms_per_order": {p: round(v, 3) for p, v in per_order.items()},
        "commits_per_idle_s": round((k1 - k0) / idle_s, 2),
        "commits_per_order": round(((k2 - k1) - (k1 - k0) / idle_s * load_s) / orders, 3),
        "event_to_email_p50_ms": bucket_percentile(h0, h1, 50),
        "event_to_email_p99_ms": bucket_percentile(h0, h1, 99),
        "reply_to_topic_p99_ms": placed["reply_to_topic"]["p99_ms"],
        "place_p99_ms": placed["place"]["p99_ms"],
    }


def summarize(windows: list[dict], rates: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rate in rates:
        per_side = {s: [w for w in windows if w["side"] == s and w["rate_per_s"] == rate]
                    for s in ("base", "new")}  # fmt: skip
        entry: dict[str, Any] = {}
        for side, ws in per_side.items():
            entry[side] = {
                "cpu_ms_per_order": {
                    p: median_range(w["cpu_ms_per_order"].get(p, 0.0) for w in ws) for p in PARTS
                },
                "consumers_and_kafka_ms_per_order": median_range(
                    sum(w["cpu_ms_per_order"].get(p, 0.0) for p in PARTS) for w in ws
                ),
                "commits_per_order": median_range(w["commits_per_order"] for w in ws),
                "event_to_email_p50_ms": median_range(w["event_to_email_p50_ms"] for w in ws),
                "event_to_email_p99_ms": median_range(w["event_to_email_p99_ms"] for w in ws),
            }
        # Per round pair: base / new (>1: the policy is cheaper).
        bases, news = per_side["base"], per_side["new"]
        pairs = list(zip(bases, news, strict=False))
        entry["ratio_base_over_new"] = {
            p: median_range(
                b["cpu_ms_per_order"].get(p, 0.0) / n["cpu_ms_per_order"].get(p, 0.0)
                for b, n in pairs
                if n["cpu_ms_per_order"].get(p, 0.0) > 0
            )
            for p in ("kafka", *CONSUMERS)
        }
        entry["ratio_base_over_new"]["consumers_and_kafka"] = median_range(
            sum(b["cpu_ms_per_order"].get(p, 0.0) for p in PARTS)
            / sum(n["cpu_ms_per_order"].get(p, 0.0) for p in PARTS)
            for b, n in pairs
        )
        out[f"{rate:g}/s"] = entry
    idle: dict[str, Any] = {}
    for side in ("base", "new"):
        ws = [w for w in windows if w["side"] == side]
        idle[side] = {p: median_range(w["idle_ms_per_s"].get(p, 0.0) for w in ws) for p in PARTS}
        idle[side]["commits_per_s"] = median_range(w["commits_per_idle_s"] for w in ws)
    out["idle_ms_per_s"] = idle
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--change", required=True, help="name of this A/B in the results file")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--rates", default="40,5", help="orders per second, comma-separated")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--idle", type=float, default=20.0, help="idle window, seconds")
    p.add_argument("--note", default="")
    args = p.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    total = int(sum(r * args.seconds for r in rates) * 2 * args.rounds) + 10
    fx = run_main(make_fixtures(total))
    windows: list[dict] = []
    try:
        for r in range(args.rounds):
            for side in ("base", "new") if r % 2 == 0 else ("new", "base"):
                restart(side)
                for rate in rates:
                    for attempt in range(3):  # other engineers restart stack parts meanwhile
                        try:
                            w = window(side, rate, args, fx)
                            break
                        except BenchFailed as exc:
                            if attempt == 2:
                                raise
                            print(f"window {side} {rate:g}/s failed ({exc!s:.160}); again")
                            time.sleep(15)
                    windows.append(w)
                    net = sum(w["cpu_ms_per_order"].get(p, 0.0) for p in PARTS)
                    print(
                        f"round {r + 1} {side} {rate:g}/s: consumers+kafka {net:.2f} ms/order, "
                        f"kafka {w['cpu_ms_per_order'].get('kafka', 0):.2f}, commits/order "
                        f"{w['commits_per_order']}, event->email p99 "
                        f"{w['event_to_email_p99_ms']} ms",
                        flush=True,
                    )
    finally:
        restart("new")
    entry = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": git_head(),
        "note": args.note,
        "settings": {
            "rounds": args.rounds,
            "rates_per_s": rates,
            "seconds": args.seconds,
            "settle_s": args.settle,
            "idle_s": args.idle,
            "base_env": BASE_ENV,
        },
        "machine": machine(),
        **summarize(windows, rates),
        "windows": windows,
    }
    path = record_entry("consumer_fetch_ab", "changes", args.change, entry)
    print(f"wrote {path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", f"{ROOT}:{ROOT / 'gen' / 'python'}")
    main()
