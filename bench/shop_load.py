"""Shop load through NGINX (REST on 127.0.0.1:8080): the Online Boutique mix, users stepped
up until p99 passes 100 ms.

Each simulated user loops over weighted actions (Online Boutique's locustfile weights):
home = ListCategories + ListProducts (1), set currency = what the storefront's currency switch
calls: ListCurrencies, a page of one category (ListProducts) and Convert of its 20 prices into
a random non-USD currency (2, Online Boutique's setCurrency), browse product =
GetProduct (10), add to cart = GetProduct + the cart service's AddItem (2), view cart =
GetCart + GetProduct per line, as the storefront shows it (3), checkout = PlaceOrder of the
lines this user added, with the account's JWT (1; the OrderPlaced event then takes them
out of the server cart). Cart calls need an account: without one (auth/user not up) add
and view fall back to GetProduct only, and checkout is skipped with a message. Simulated
users share the --accounts accounts and so their carts (one cart row each: its lock
queues their writes); each step starts with the accounts' carts emptied.
A user thinks between actions (uniform 0.5-1.5x --think-ms, 100 ms by default: a brisk
shopper, far quicker than Locust's 1-10 s, so a few hundred users load the 2 cores) and
gets its own loopback source address (127.1.0.0/16, one per user up to 65,000) so NGINX's
per-IP limit (100 r/s) applies per user, as it would to real shoppers. A user
without think time sends ~125 req/s on its own and is, rightly, rate limited. Traffic goes
to 127.0.0.1 only.

Per step (users 1, 2, 3, 4, 6, 9, 14, ... (x1.5) up to --max-users, --seconds each,
bounded request count): req/s, p50/p99 of single requests (all, reads alone, checkout
alone), orders/s, errors, and the CPU per request of each part of the stack (the pid files of
`make up` name every manifest service; PostgreSQL backends by database, as
../shared/tools/cpu_by_part.py names them), of the load generator, and of the rest of the
machine meanwhile.
Any error fails the run loudly. Results: the highest req/s whose p99 over all requests
stayed under 100 ms, and the highest whose p99 of reads did (checkout is ~4% of requests,
so PlaceOrder's latency alone decides the first; the second shows the browse capacity,
reported with checkout's p99 at that step). Stepping stops once reads pass the threshold.

    python -m bench.shop_load [--seconds 8] [--max-users 512] [--think-ms 100] [--p99-ms 100]
    python -m bench.shop_load --at-users 120 --seconds 20   # one step, nothing written
Writes bench/results/shop_load.json (stepped runs only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import time
import uuid
from typing import Any

import aiohttp

from bench.common import (
    BenchFailed,
    check_loopback,
    core_ticks,
    median_range,
    percentile,
    write_result,
)
from bench.stack_counters import stack_cpu

GATEWAY = os.environ.get("SHOPMESH_GATEWAY", "http://127.0.0.1:8080")
MAX_REQUESTS = 60_000  # per step
CURRENCIES = ("EUR", "GBP", "JPY", "CAD", "CHF")  # the demo rates (services/currency/demo.py)
ACTIONS = (
    ("home", 1),
    ("set_currency", 2),
    ("browse", 10),
    ("add_to_cart", 2),
    ("view_cart", 3),
    ("checkout", 1),
)
ADDRESS = {"recipient_name": "Ada Bench", "line1": "1 Main St", "city": "Lyon",
           "postal_code": "69001", "country_code": "FR"}  # fmt: skip


def user_address(n: int) -> str:
    """User n's own loopback source address: 127.1.0.1, 127.1.0.2, ... (Linux routes all of
    127.0.0.0/8 to lo, so any of them can be bound without setup)."""
    n += 1
    return f"127.1.{n // 250}.{n % 250 + 1}"


class Shop:
    def __init__(
        self, products: list[dict[str, Any]], accounts: list[tuple[str, str]], think_s: float
    ) -> None:
        self.products = products
        self.categories = sorted({p["category"] for p in products})
        self.think_s = think_s
        self.accounts = accounts  # (token, user_id); empty = no checkout
        self.budget = {p["id"]: max(0, int(p.get("stock", 0)) - 20) for p in products}
        self.lat: list[float] = []
        self.lat_by: dict[str, list[float]] = {"read": [], "checkout": [], "cart": []}
        self.errors = 0
        self.first_error = ""
        self.orders = 0
        self.requests = 0

    async def req(
        self, s: aiohttp.ClientSession, method: str, path: str, kind: str = "read", **kw: Any
    ) -> Any:
        t0 = time.perf_counter()
        try:
            async with s.request(method, GATEWAY + path, **kw) as r:
                body = await r.read()
                if r.status != 200:
                    raise BenchFailed(f"{method} {path}: HTTP {r.status} {body[:200]!r}")
        except Exception as exc:
            self.errors += 1
            self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"[:300]
            return None
        took = time.perf_counter() - t0
        self.lat.append(took)
        self.lat_by[kind].append(took)
        self.requests += 1
        return body

    async def user(self, n: int, stop_at: float) -> None:
        conn = aiohttp.TCPConnector(limit=1, local_addr=(user_address(n), 0))
        rnd = random.Random(n)
        names, weights = zip(*ACTIONS, strict=True)
        cart: list[str] = []
        token, uid = self.accounts[n % len(self.accounts)] if self.accounts else ("", "")
        auth = {"authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(connector=conn) as s:
            while time.perf_counter() < stop_at and self.requests + self.errors < MAX_REQUESTS:
                if self.think_s:
                    await asyncio.sleep(self.think_s * (0.5 + rnd.random()))
                action = rnd.choices(names, weights)[0]
                pid = rnd.choice(self.products)["id"]
                if action == "home":
                    await self.req(s, "GET", "/api/v1/categories")
                    await self.req(s, "GET", "/api/v1/products?page_size=20")
                elif action == "set_currency":
                    await self.req(s, "GET", "/api/v1/currencies")
                    category = rnd.choice(self.categories)
                    page = await self.req(
                        s, "GET", f"/api/v1/products?page_size=20&category={category}"
                    )
                    if page is None:
                        continue
                    prices = [p["price"] for p in json.loads(page).get("products", [])]
                    if prices:
                        await self.req(
                            s, "POST", "/api/v1/currencies:convert",
                            json={"amounts": prices, "to_currency_code": rnd.choice(CURRENCIES)},
                        )  # fmt: skip
                elif action in ("browse", "add_to_cart"):
                    await self.req(s, "GET", f"/api/v1/products/{pid}")
                    if action == "add_to_cart" and len(cart) < 5:
                        if token:
                            added = await self.req(
                                s, "POST", f"/api/v1/carts/{uid}/items", kind="cart",
                                json={"product_id": pid, "quantity": 1}, headers=auth,
                            )  # fmt: skip
                            if added is None:
                                continue
                        cart.append(pid)
                elif action == "view_cart":
                    items = cart or [pid]
                    if token:
                        got = await self.req(
                            s, "GET", f"/api/v1/carts/{uid}", kind="cart", headers=auth
                        )
                        if got is None:
                            continue
                        lines = json.loads(got).get("cart", {}).get("items", [])
                        items = [ln["product_id"] for ln in lines][:5]
                    for item in items:
                        await self.req(s, "GET", f"/api/v1/products/{item}")
                elif action == "checkout" and token and cart:
                    lines = [p for p in dict.fromkeys(cart) if self.budget[p] > 0]
                    if not lines:
                        continue
                    for p in lines:
                        self.budget[p] -= 1
                    body = {"idempotency_key": f"bench-{uuid.uuid4().hex}", "user_id": uid,
                            "lines": [{"product_id": p, "quantity": 1} for p in lines],
                            "shipping_address": ADDRESS}  # fmt: skip
                    got = await self.req(
                        s, "POST", "/api/v1/orders", kind="checkout", json=body,
                        headers={"authorization": f"Bearer {token}"},
                    )  # fmt: skip
                    if got is not None:
                        self.orders += 1
                        cart.clear()


async def setup(accounts: int) -> tuple[list[dict[str, Any]], list[tuple[str, str]], str]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{GATEWAY}/api/v1/products?page_size=50") as r:
            if r.status != 200:
                raise BenchFailed(f"catalog through NGINX: HTTP {r.status}")
            products = (await r.json())["products"]
        out: list[tuple[str, str]] = []
        why = ""
        for _ in range(accounts):
            email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
            pw = "Bench-pass-" + uuid.uuid4().hex[:8]
            async with s.post(f"{GATEWAY}/api/v1/users", json={
                "email": email, "password": pw, "display_name": "Bench"}) as r:  # fmt: skip
                if r.status != 200:
                    why = f"register: HTTP {r.status} {(await r.text())[:200]}"
                    break
            async with s.post(
                f"{GATEWAY}/api/v1/auth/login", json={"email": email, "password": pw}
            ) as r:
                if r.status != 200:
                    why = f"login: HTTP {r.status} {(await r.text())[:200]}"
                    break
                tokens = (await r.json())["tokens"]
            out.append((tokens["access_token"], tokens["user_id"]))
    return products, out, why


async def step(
    products: list[dict[str, Any]], accounts: Any, users: int, seconds: float, think_s: float
) -> dict:
    shop = Shop(products, accounts, think_s)
    async with aiohttp.ClientSession() as s:  # a fresh cart per account (not measured)
        for token, uid in accounts:
            async with s.delete(
                f"{GATEWAY}/api/v1/carts/{uid}", headers={"authorization": f"Bearer {token}"}
            ) as r:
                if r.status != 200:
                    raise BenchFailed(f"EmptyCart: HTTP {r.status} {(await r.read())[:200]!r}")
    cpu0, machine0, self0 = stack_cpu(), machine_cpu_s(), own_cpu_s()
    t0 = time.perf_counter()
    await asyncio.gather(*(shop.user(n, t0 + seconds) for n in range(users)))
    wall = time.perf_counter() - t0
    cpu = cpu_per_request(cpu0, machine0, self0, shop.requests)
    xs = sorted(shop.lat)
    by = {k: sorted(v) for k, v in shop.lat_by.items()}
    return {
        "users": users,
        "requests": shop.requests,
        "errors": shop.errors,
        "first_error": shop.first_error,
        "req_per_s": round(shop.requests / wall, 1),
        "orders_per_s": round(shop.orders / wall, 2),
        "p50_ms": round(percentile(xs, 50) * 1000, 2),
        "p99_ms": round(percentile(xs, 99) * 1000, 2),
        # Reads (home, product, cart) and checkout (PlaceOrder) apart: checkout is ~4% of
        # requests, so its latency alone decides the mix's p99.
        "read_p50_ms": round(percentile(by["read"], 50) * 1000, 2) if by["read"] else None,
        "read_p99_ms": round(percentile(by["read"], 99) * 1000, 2) if by["read"] else None,
        "cart_calls": len(by["cart"]),
        "cart_p50_ms": round(percentile(by["cart"], 50) * 1000, 2) if by["cart"] else None,
        "cart_p99_ms": round(percentile(by["cart"], 99) * 1000, 2) if by["cart"] else None,
        "checkouts": len(by["checkout"]),
        "cpu_us_per_request_by_part": cpu,
        "checkout_p50_ms": (
            round(percentile(by["checkout"], 50) * 1000, 2) if by["checkout"] else None
        ),
        "checkout_p99_ms": (
            round(percentile(by["checkout"], 99) * 1000, 2) if by["checkout"] else None
        ),
    }


def machine_cpu_s() -> float:
    """Busy CPU seconds of the whole machine so far (every core's busy jiffies)."""
    return sum(busy for busy, _ in core_ticks().values()) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this load generator so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def cpu_per_request(
    cpu0: dict[str, float], machine0: float, self0: float, requests: int
) -> dict[str, float]:
    """CPU us per request of each part of the stack over a step (its pid files name every
    manifest service, PostgreSQL backends by database), the load generator, and what the
    rest of the machine spent meanwhile (other engineers' processes on a shared machine)."""
    if not requests:
        return {}
    after = stack_cpu()
    out = {k: v - cpu0.get(k, 0.0) for k, v in after.items()}
    out = {k: v for k, v in out.items() if v > 0}
    out["load generator"] = own_cpu_s() - self0
    out["(rest of the machine)"] = max(0.0, machine_cpu_s() - machine0 - sum(out.values()))
    ranked = sorted(out.items(), key=lambda kv: -kv[1])
    return {k: round(v / requests * 1e6, 1) for k, v in ranked}


async def prepare(args: argparse.Namespace) -> tuple[list[dict[str, Any]], Any, str]:
    check_loopback(GATEWAY.split("//", 1)[1].split(":", 1)[0])
    try:
        return await setup(args.accounts)
    except aiohttp.ClientError as exc:
        raise BenchFailed(f"NGINX on {GATEWAY} not reachable: {exc}") from None


async def one_step(args: argparse.Namespace) -> dict[str, Any]:
    """One step at a fixed user count (for CPU-by-part runs at the knee)."""
    products, accounts, why = await prepare(args)
    if not accounts:
        raise BenchFailed(f"no JWT for checkout: {why}")
    return await step(products, accounts, args.at_users, args.seconds, args.think_ms / 1000)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    products, accounts, why = await prepare(args)
    skipped = {}
    if not accounts:
        skipped["checkout"] = f"no JWT (auth/user through NGINX not working): {why}"
        print(f"SKIP checkout: {skipped['checkout']}")
    steps = []
    users = args.start_users
    while users <= args.max_users:
        res = await step(products, accounts, users, args.seconds, args.think_ms / 1000)
        print(
            f"users {users:>3}: {res['req_per_s']:>7.1f} req/s  p50 {res['p50_ms']} ms  "
            f"p99 {res['p99_ms']} ms (reads {res['read_p99_ms']}, checkout "
            f"{res['checkout_p99_ms']})  orders/s {res['orders_per_s']}  errors {res['errors']}",
            flush=True,
        )
        steps.append(res)
        if res["errors"]:
            raise BenchFailed(f"{res['errors']} errors at {users} users: {res['first_error']}")
        if (res["read_p99_ms"] or 0) > args.p99_ms:
            break  # past the threshold for the whole mix and for reads alone
        users = max(users + 1, round(users * 1.5))  # fine enough to place the knee
    ok = [s for s in steps if s["p99_ms"] <= args.p99_ms]
    best = max(ok, key=lambda s: s["req_per_s"]) if ok else None
    ok_reads = [s for s in steps if (s["read_p99_ms"] or 0) <= args.p99_ms]
    best_reads = max(ok_reads, key=lambda s: s["req_per_s"]) if ok_reads else None
    return {
        "what": "Online Boutique mix via NGINX -> Envoy (REST transcoding) -> services; "
        f"users thinking {args.think_ms:g} ms (0.5-1.5x) between actions, stepped until "
        "the reads' p99 > threshold",
        "think_ms": args.think_ms,
        "gateway": GATEWAY,
        "p99_threshold_ms": args.p99_ms,
        "seconds_per_step": args.seconds,
        "mix": dict(ACTIONS),
        "skipped": skipped,
        "steps": steps,
        "best_under_threshold": best,
        "req_per_s_at_p99_under_threshold": best["req_per_s"] if best else 0.0,
        "orders_per_s_at_that_step": best["orders_per_s"] if best else 0.0,
        "req_per_s_at_read_p99_under_threshold": best_reads["req_per_s"] if best_reads else 0.0,
        "checkout_p99_ms_at_that_step": best_reads["checkout_p99_ms"] if best_reads else None,
        "p99_ms_over_steps": median_range(s["p99_ms"] for s in steps),
        # What each part spent per request at the knee: where the next cut must come from.
        "cpu_us_per_request_at_knee": best["cpu_us_per_request_by_part"] if best else {},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--start-users", type=int, default=1)
    ap.add_argument("--max-users", type=int, default=512)
    ap.add_argument("--think-ms", type=float, default=100.0)
    ap.add_argument("--p99-ms", type=float, default=100.0)
    ap.add_argument("--accounts", type=int, default=4)
    ap.add_argument("--at-users", type=int, default=0, help="one step at this many users")
    args = ap.parse_args()
    if args.at_users:
        res = asyncio.run(one_step(args))
        print(json.dumps(res))
        if res["errors"]:
            raise SystemExit(f"{res['errors']} errors: {res['first_error']}")
        return
    result = asyncio.run(bench(args))
    path = write_result("shop_load", result)
    print(f"req/s at p99 < {args.p99_ms} ms: {result['req_per_s_at_p99_under_threshold']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
