"""Where the CPU of a placed order goes: PlaceOrder at a fixed rate against the running
stack, CPU per part per order (../shared/tools/cpu_by_part.py around the load) and the round
trips each order makes to each store. Writes bench/results/order_cost.json.

Per round, two windows measured by cpu_by_part.py, one after the other:

- idle: `sleep` as long as a load window, so the stack's background (relay and sweeper
  polls, Kafka, Prometheus scrapes, and other engineers' work on this shared machine)
  is measured as CPU per second;
- load: a child of this module (`--load`) places orders on the stack's order service
  (127.0.0.1, its port in schemas/topology.yaml, direct gRPC, one line each, a new
  idempotency key each)
  at `--rate` for `--seconds`, open loop, as the shopper (their own access token, as the
  storefront calls it; `--as-platform`: as the demo admin), tails shop.orders.v1 for each
  order's OrderPlaced (PlaceOrder reply -> record read from the topic) and waits
  `--settle` seconds after the last one so the downstream (notification, SMTP sink)
  finishes inside the window.

CPU per order of a part = (its CPU in the load window - its idle CPU per second x the load
window) / orders; the gross figure (idle not subtracted) is kept beside it. cpu_by_part.py
groups every process on the machine by its command line, so another engineer's product
workers count as "product": the same is also taken over the stack's own processes alone
(their pid files and descendants, `cpu_ms_per_order_stack_only`), which the report shows.
Round trips: FerretDB's own command counters (/debug/metrics, by command) and PostgreSQL's
per-database transaction and row counters (pg_stat_database), read before and after each
window, idle rate subtracted the same way. Median over rounds.

    python -m bench.order_cost [--rate 20] [--seconds 15] [--settle 3] [--rounds 3]
                               [--label NAME]
`--label` stores the run under that name in the results file (default "latest"), so a
before/after pair stays side by side.

Counters and the stack's CPU by part: bench/stack_counters.py (stack_cpu is imported from
here by other benchmarks too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, BenchFailed, git_head, machine, percentile, run_main
from bench.stack_counters import counters, delta, stack_cpu
from shop.topology import SERVICES

CPU_BY_PART = ROOT.parent / "shared" / "tools" / "cpu_by_part.py"
ORDER = ("127.0.0.1", SERVICES["order"].port)
TOPIC = "shop.orders.v1"
MAX_ORDERS = 20_000

# cpu_by_part.py output: "  order                         12.3 s   45.6%"
_PART_LINE = re.compile(r"^\s+(.+?)\s+([\d.]+) s\s+[\d.]+%$")
_WINDOW_LINE = re.compile(r"^window ([\d.]+) s")


# ---------------------------------------------------------------- windows


def cpu_window(cmd: list[str]) -> tuple[float, dict[str, float]]:
    """Run `cmd` under cpu_by_part.py: (window seconds, CPU seconds by part)."""
    proc = subprocess.run(
        [sys.executable, str(CPU_BY_PART), "--", *cmd],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise BenchFailed(f"{cmd[:4]} failed ({proc.returncode}): {proc.stderr[-800:]}")
    window = 0.0
    parts: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        if m := _WINDOW_LINE.match(line):
            window = float(m.group(1))
        elif m := _PART_LINE.match(line):
            parts[m.group(1).strip()] = float(m.group(2))
    if not window:
        raise BenchFailed(f"no cpu_by_part output: {proc.stdout[-400:]}")
    return window, parts


def one_round(args: argparse.Namespace, fixtures: dict[str, Any]) -> dict[str, Any]:
    expected = args.seconds + args.settle + 1.5
    before, own = counters(), stack_cpu()
    idle_s, idle_cpu = cpu_window(["sleep", f"{expected:.1f}"])
    idle_counts = delta(counters(), before)
    idle_own = delta(stack_cpu(), own)
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        load_cmd = [
            sys.executable, "-m", "bench.order_cost", "--load", "--rate", str(args.rate),
            "--seconds", str(args.seconds), "--settle", str(args.settle), "--out", out.name,
            "--fixtures", json.dumps(fixtures), *(["--as-platform"] if args.as_platform else []),
        ]  # fmt: skip
        before, own = counters(), stack_cpu()
        load_s, load_cpu = cpu_window(load_cmd)
        load_counts = delta(counters(), before)
        load_own = delta(stack_cpu(), own)
        placed = json.loads(Path(out.name).read_text())
    orders = placed["orders"]
    per_order: dict[str, float] = {}
    gross: dict[str, float] = {}
    for part in set(load_cpu) | set(idle_cpu):
        load, idle = load_cpu.get(part, 0.0), idle_cpu.get(part, 0.0)
        gross[part] = load / orders * 1000
        per_order[part] = (load - idle / idle_s * load_s) / orders * 1000
    stack_only = {
        part: (load_own.get(part, 0.0) - idle_own.get(part, 0.0) / idle_s * load_s) / orders * 1000
        for part in set(load_own) | set(idle_own)
    }
    trips = {
        k: (load_counts.get(k, 0.0) - idle_counts.get(k, 0.0) / idle_s * load_s) / orders
        for k in set(load_counts) | set(idle_counts)
    }
    return {
        "orders": orders,
        "load_window_s": load_s,
        "idle_window_s": idle_s,
        "cpu_ms_per_order": per_order,
        "cpu_ms_per_order_gross": gross,
        "cpu_ms_per_order_stack_only": stack_only,
        "idle_cpu_s_per_s": {p: v / idle_s for p, v in idle_cpu.items()},
        "round_trips_per_order": trips,
        "place": placed["place"],
        "reply_to_topic": placed["reply_to_topic"],
    }


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> dict[str, float]:
        names = {n for r in rounds for n in r[key]}
        return {
            n: round(statistics.median(r[key].get(n, 0.0) for r in rounds), 3)
            for n in sorted(names)
        }

    return {
        "cpu_ms_per_order": med("cpu_ms_per_order"),
        "cpu_ms_per_order_gross": med("cpu_ms_per_order_gross"),
        "cpu_ms_per_order_stack_only": med("cpu_ms_per_order_stack_only"),
        "idle_cpu_s_per_s": med("idle_cpu_s_per_s"),
        "round_trips_per_order": {
            k: v for k, v in med("round_trips_per_order").items() if abs(v) >= 0.05
        },
        "orders": sum(r["orders"] for r in rounds),
        "place_p50_ms": round(statistics.median(r["place"]["p50_ms"] for r in rounds), 2),
        "place_p99_ms": round(statistics.median(r["place"]["p99_ms"] for r in rounds), 2),
        "reply_to_topic_p50_ms": round(
            statistics.median(r["reply_to_topic"]["p50_ms"] for r in rounds), 2
        ),
        "reply_to_topic_p99_ms": round(
            statistics.median(r["reply_to_topic"]["p99_ms"] for r in rounds), 2
        ),
    }


# ---------------------------------------------------------------- the load child


async def make_fixtures(orders: int) -> dict[str, Any]:
    """A new shopper and products with stock for every order of the run (several products,
    so ReserveStock does not queue on one row)."""
    from grpclib.client import Channel

    from shop.common.v1 import common_pb2
    from shop.product.v1 import product_pb2
    from shop.product.v1.product_grpc import ProductServiceStub
    from shop.user.v1 import user_pb2
    from shop.user.v1.user_grpc import UserServiceStub
    from stack.callers import as_platform

    tag = uuid.uuid4().hex[:8]
    pch = as_platform(Channel("127.0.0.1", SERVICES["product"].port))
    uch = as_platform(Channel("127.0.0.1", SERVICES["user"].port))
    try:
        user = (
            await UserServiceStub(uch).RegisterUser(
                user_pb2.RegisterUserRequest(
                    email=f"cost-{tag}@example.com", password="bench-password-1",
                    display_name="Cost",
                )
            )
        ).user  # fmt: skip
        products = [
            (
                await ProductServiceStub(pch).CreateProduct(
                    product_pb2.CreateProductRequest(
                        sku=f"COST-{tag}-{i}", name="Cost thing", category="bench",
                        price=common_pb2.Money(currency_code="USD", units=3),
                        stock=orders + 100,
                    )
                )
            ).product.id
            for i in range(16)
        ]  # fmt: skip
    finally:
        pch.close()
        uch.close()
    return {"user_id": user.id, "email": f"cost-{tag}@example.com", "products": products}


async def load(args: argparse.Namespace) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from grpclib.client import Channel

    from shop.common.v1 import common_pb2
    from shop.order.v1 import order_pb2 as pb
    from shop.order.v1.order_grpc import OrderServiceStub
    from shop.topology import TOPICS
    from stack.callers import as_platform

    fx = json.loads(args.fixtures)
    if args.as_platform:
        channel = as_platform(Channel(*ORDER))
        md: dict[str, str] = {}
    else:  # the shopper's own token, fresh for this window (they last 15 min)
        from shop.auth.v1 import auth_pb2
        from shop.auth.v1.auth_grpc import AuthServiceStub

        auth = Channel("127.0.0.1", SERVICES["auth"].port)
        try:
            login = await AuthServiceStub(auth).Login(
                auth_pb2.LoginRequest(email=fx["email"], password="bench-password-1")
            )
        finally:
            auth.close()
        channel = Channel(*ORDER)
        md = {"authorization": f"Bearer {login.tokens.access_token}"}
    stub = OrderServiceStub(channel)
    address = common_pb2.Address(
        recipient_name="Ada", line1="1 Main St", city="Lyon", postal_code="69001",
        country_code="FR",
    )  # fmt: skip
    tail = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9092", group_id=None)
    await tail.start()
    parts = next(t.partitions for t in TOPICS if t.name == TOPIC)
    tps = [TopicPartition(TOPIC, p) for p in range(parts)]
    tail.assign(tps)
    await tail.seek_to_end(*tps)
    for tp in tps:
        await tail.position(tp)
    on_topic: dict[str, float] = {}
    stop = asyncio.Event()

    async def read_tail() -> None:
        while not stop.is_set():
            for records in (await tail.getmany(timeout_ms=50)).values():
                now = time.perf_counter()
                for r in records:
                    if r.key is not None:
                        on_topic.setdefault(r.key.decode(), now)

    reader = asyncio.create_task(read_tail())
    replied: dict[str, float] = {}
    latencies: list[float] = []
    errors: list[str] = []
    tag = uuid.uuid4().hex[:8]

    async def place(i: int, scheduled: float) -> None:
        req = pb.PlaceOrderRequest(
            idempotency_key=f"cost-{tag}-{i}",
            user_id=fx["user_id"],
            lines=[pb.LineItem(product_id=fx["products"][i % len(fx["products"])], quantity=1)],
            shipping_address=address,
        )
        try:
            reply = await stub.PlaceOrder(req, timeout=10, metadata=md)
        except Exception as exc:
            errors.append(repr(exc)[:300])
            return
        now = time.perf_counter()
        replied[reply.order.id] = now
        latencies.append(now - scheduled)

    count = min(int(args.rate * args.seconds), MAX_ORDERS)
    t0 = time.perf_counter()
    tasks = []
    try:
        for i in range(count):
            scheduled = t0 + i / args.rate
            if (delay := scheduled - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(place(i, scheduled)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
        deadline = time.monotonic() + 60
        while not set(replied) <= set(on_topic) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(args.settle)
    finally:
        stop.set()
        await reader
        await tail.stop()
        channel.close()
    if errors:
        raise BenchFailed(f"{len(errors)} of {count} PlaceOrder calls failed: {errors[0]}")
    missing = set(replied) - set(on_topic)
    if missing:
        raise BenchFailed(f"{len(missing)} of {count} OrderPlaced never reached {TOPIC}")
    lat = sorted(latencies)
    topic = sorted(on_topic[o] - t for o, t in replied.items())
    return {
        "orders": len(replied),
        "place": {
            "rate_per_s": args.rate,
            "achieved_per_s": round(len(replied) / wall, 1),
            "p50_ms": round(percentile(lat, 50) * 1000, 2),
            "p99_ms": round(percentile(lat, 99) * 1000, 2),
        },
        "reply_to_topic": {
            "p50_ms": round(percentile(topic, 50) * 1000, 2),
            "p99_ms": round(percentile(topic, 99) * 1000, 2),
            "max_ms": round(topic[-1] * 1000, 2),
        },
    }


# ---------------------------------------------------------------- entry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=20.0, help="orders per second")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--settle", type=float, default=3.0, help="after the last event")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--label", default="latest", help="name of this run in the results file")
    p.add_argument("--note", default="")
    p.add_argument("--as-platform", action="store_true", help="as the demo admin, not the shopper")
    p.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--fixtures", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.load:
        Path(args.out).write_text(json.dumps(run_main(load(args))))
        return
    if not CPU_BY_PART.exists():
        raise BenchFailed(f"{CPU_BY_PART} not found")
    fixtures = run_main(make_fixtures(int(args.rate * args.seconds * args.rounds)))
    rounds = []
    for r in range(args.rounds):
        got = one_round(args, fixtures)
        rounds.append(got)
        total = sum(v for k, v in got["cpu_ms_per_order"].items() if k != "load generator")
        print(
            f"round {r + 1}: {got['orders']} orders, {total:.1f} ms CPU/order (stack, net), "
            f"reply->topic p50 {got['reply_to_topic']['p50_ms']} ms",
            flush=True,
        )
    path = RESULTS / "order_cost.json"
    data = json.loads(path.read_text()) if path.exists() else {"benchmark": "order_cost"}
    head = git_head()
    data.setdefault("runs", {})[args.label] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": head,
        "note": args.note,
        "settings": {
            "rate_per_s": args.rate,
            "seconds": args.seconds,
            "settle_s": args.settle,
            "rounds": args.rounds,
            "target": f"stack order service 127.0.0.1:{ORDER[1]}, direct gRPC",
            "caller": "the demo admin" if args.as_platform else "the shopper (own token)",
        },
        "machine": machine(),
        **summarize(rounds),
        "rounds": rounds,
    }
    data["what"] = __doc__.split("\n\n")[0].replace("\n", " ")
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", f"{ROOT}:{ROOT / 'gen' / 'python'}")
    main()
