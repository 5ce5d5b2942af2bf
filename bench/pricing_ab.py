"""What a checkout in the shopper's currency with a shipping quote costs, against one in the
catalog's currency without a quote, same run (#26 items 2 and 4).

Through NGINX (REST) as a signed-in shopper, alternating rounds of the two sides:
- base: PlaceOrder (USD, no quote: the order service asks neither currency nor shipping);
- priced: CreateQuote (DE, EUR) then PlaceOrder naming it in EUR: the order asks shipping
  for the quote (GetQuote) and currency for the conversion (Convert) through Envoy's
  internal listener, and shipping asked currency for the quote's price.
Per side: p50/p99 of PlaceOrder alone and of the whole checkout (quote + order), and CPU
per checkout of the stack's own processes by part (stack_cpu: pid files and their
descendants), from the rounds' deltas. The stack is shared: other engineers' calls land in
the same processes, so each side's figure is the median over its rounds.

    python -m bench.pricing_ab [--rounds 4] [--orders 40] [--concurrency 4]
Writes bench/results/pricing_ab.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

import httpx
from grpclib.client import Channel

from bench.common import BenchFailed, percentile, run_main, write_result
from bench.order_cost import stack_cpu
from shop.common.v1 import common_pb2
from shop.product.v1 import product_pb2
from shop.product.v1.product_grpc import ProductServiceStub
from shop.topology import SERVICES
from stack.callers import as_platform

GATEWAY = "http://127.0.0.1:8080"
ADDRESS = {"recipient_name": "Ada Bench", "line1": "1 Main St", "city": "Berlin",
           "postal_code": "10117", "country_code": "DE"}  # fmt: skip
PARTS = ("order", "currency", "shipping", "product", "envoy", "nginx", "ferretdb")


async def fixtures(http: httpx.AsyncClient) -> tuple[str, str, str]:
    email = f"bench-pricing-{uuid.uuid4().hex[:10]}@example.com"
    r = await http.post("/api/v1/users", json={"email": email, "password": "bench-pw-123456",
                                               "display_name": "Bench"})  # fmt: skip
    if r.status_code != 200:
        raise BenchFailed(f"register: {r.status_code} {r.text[:200]}")
    r = await http.post("/api/v1/auth/login", json={"email": email, "password": "bench-pw-123456"})
    tokens = r.json()["tokens"]
    channel = as_platform(Channel("127.0.0.1", SERVICES["product"].port))
    product = await ProductServiceStub(channel).CreateProduct(
        product_pb2.CreateProductRequest(
            sku=f"BENCH-PRICE-{uuid.uuid4().hex[:8]}", name="Bench priced thing",
            category="test", stock=100_000,
            price=common_pb2.Money(currency_code="USD", units=19, nanos=990_000_000),
        )
    )  # fmt: skip
    channel.close()
    return tokens["access_token"], tokens["user_id"], product.product.id


async def checkout(
    http: httpx.AsyncClient, token: str, uid: str, pid: str, priced: bool
) -> tuple[float, float]:
    """(PlaceOrder seconds, whole checkout seconds)."""
    t0 = time.perf_counter()
    body: dict[str, Any] = {
        "user_id": uid, "idempotency_key": uuid.uuid4().hex,
        "lines": [{"product_id": pid, "quantity": 1}], "shipping_address": ADDRESS,
    }  # fmt: skip
    if priced:
        q = await http.post("/api/v1/shipping/quotes", json={
            "country_code": "DE", "currency_code": "EUR",
            "lines": [{"product_id": pid, "quantity": 1}]})  # fmt: skip
        if q.status_code != 200:
            raise BenchFailed(f"CreateQuote: {q.status_code} {q.text[:200]}")
        body |= {"currency_code": "EUR", "shipping_quote_id": q.json()["quote"]["id"]}
    t1 = time.perf_counter()
    r = await http.post("/api/v1/orders", json=body, headers={"authorization": f"Bearer {token}"})
    t2 = time.perf_counter()
    if r.status_code != 200:
        raise BenchFailed(f"PlaceOrder: {r.status_code} {r.text[:200]}")
    order = r.json()["order"]
    if priced and (order["currency_code"] != "EUR" or not order.get("shipping_quote_id")):
        raise BenchFailed(f"a priced order came back unpriced: {order['currency_code']}")
    return t2 - t1, t2 - t0


async def one_round(http, fx, priced: bool, orders: int, concurrency: int) -> dict[str, Any]:
    place: list[float] = []
    whole: list[float] = []
    todo = iter(range(orders))

    async def worker() -> None:
        for _ in todo:
            p, w = await checkout(http, *fx, priced)
            place.append(p)
            whole.append(w)

    before = stack_cpu()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - t0
    after = stack_cpu()
    cpu = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    return {
        "priced": priced, "orders": orders, "seconds": seconds,
        "place_ms": [x * 1000 for x in place], "checkout_ms": [x * 1000 for x in whole],
        "cpu_ms_per_checkout": {k: v * 1000 / orders for k, v in cpu.items() if v > 0},
    }  # fmt: skip


def side(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    place = sorted(x for r in rounds for x in r["place_ms"])
    whole = sorted(x for r in rounds for x in r["checkout_ms"])
    per_part = {
        part: statistics.median(r["cpu_ms_per_checkout"].get(part, 0.0) for r in rounds)
        for part in PARTS
    }
    total = statistics.median(sum(r["cpu_ms_per_checkout"].values()) for r in rounds)
    return {
        "place_p50_ms": round(percentile(place, 50), 1),
        "place_p99_ms": round(percentile(place, 99), 1),
        "checkout_p50_ms": round(percentile(whole, 50), 1),
        "checkout_p99_ms": round(percentile(whole, 99), 1),
        "cpu_ms_per_checkout": {k: round(v, 2) for k, v in per_part.items()},
        "cpu_ms_per_checkout_stack_total": round(total, 2),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as http:
        fx = await fixtures(http)
        for priced in (False, True):  # warm both paths (connections, caches)
            await one_round(http, fx, priced, 5, 1)
        rounds = []
        for _ in range(args.rounds):
            for priced in (False, True):
                rounds.append(await one_round(http, fx, priced, args.orders, args.concurrency))
    base = side([r for r in rounds if not r["priced"]])
    priced = side([r for r in rounds if r["priced"]])
    ratio = {
        k: round(priced[k] / base[k], 2)
        for k in ("place_p50_ms", "place_p99_ms", "checkout_p50_ms")
    } | {
        "cpu_total": round(
            priced["cpu_ms_per_checkout_stack_total"] / base["cpu_ms_per_checkout_stack_total"], 2
        )
    }
    return {
        "what": "checkout in EUR with a shipping quote (CreateQuote + PlaceOrder) vs in USD "
        "without (PlaceOrder), REST through NGINX as the shopper, alternating rounds, same run",
        "params": vars(args),
        "base": base,
        "priced": priced,
        "ratio_priced_over_base": ratio,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--orders", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    result = run_main(bench(args))
    path = write_result("pricing_ab", result)
    print(path)
    print(result["base"], result["priced"], result["ratio_priced_over_base"], sep="\n")


if __name__ == "__main__":
    main()
