"""CPU per cart call on the running stack, by part: the cart service process (gRPC runtime,
JWT check, use case, adapter), the PostgreSQL backends of its database (primary and
replica) and Envoy, for AddItem and GetCart through the gateway (REST, as the load
generator and other clients call it), each part's idle rate over the same length of time
subtracted.

Shoppers are new users of the stack (one cart each, so no two calls wait on one cart's
lock); calls go closed-loop from --concurrency clients, each from its own loopback address
(as bench/shop_load.py's users: NGINX's per-IP limit is each one's). AddItem first
(quantity 1 of one of 40 products, each cart emptied after every 40 adds), then GetCart,
--calls each.

    python -m bench.cart_cost [--calls 2000] [--concurrency 4] [--rounds 2]
Writes bench/results/cart_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.common import BenchFailed, median_range, proc_cpu_s, run_main, write_result
from bench.shop_load import user_address
from stack.testing import StackHandle

GATEWAY = "http://127.0.0.1:8080"


async def new_shopper(s: aiohttp.ClientSession) -> tuple[str, str]:
    email = f"cartcost-{uuid.uuid4().hex[:10]}@example.com"
    pw = "Bench-pass-" + uuid.uuid4().hex[:8]
    body = {"email": email, "password": pw, "display_name": "Bench"}
    async with s.post(f"{GATEWAY}/api/v1/users", json=body) as r:
        if r.status != 200:
            raise BenchFailed(f"register: HTTP {r.status}")
    async with s.post(f"{GATEWAY}/api/v1/auth/login", json={"email": email, "password": pw}) as r:
        if r.status != 200:
            raise BenchFailed(f"login: HTTP {r.status}")
        tokens = (await r.json())["tokens"]
    return tokens["access_token"], tokens["user_id"]


def tree_cpu(pid: int) -> float:
    """CPU of a process and its direct children (a service's workers, Envoy under sh)."""
    total = proc_cpu_s(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(proc_cpu_s(int(c)) for c in children)


async def pg_pids(dsns: list[str]) -> list[int]:
    out = []
    for dsn in dsns:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = 'cart' AND pid <> pg_backend_pid()"
            )
            out += [r["pid"] for r in rows]
        finally:
            await conn.close()
    return out


class Parts:
    def __init__(self, stack: StackHandle, dsns: list[str]) -> None:
        self.stack, self.dsns = stack, dsns

    async def sample(self) -> dict[str, float]:
        cart, envoy = self.stack.pid("cart"), self.stack.pid("envoy")
        if cart is None or envoy is None:
            raise BenchFailed("the stack's cart service and Envoy must be running")
        pg = sum(c for c in (proc_cpu_s(p) for p in await pg_pids(self.dsns)) if c == c)
        return {"cart": tree_cpu(cart), "postgres": pg, "envoy": tree_cpu(envoy)}


async def phase(op: str, shoppers: list[tuple[str, str]], calls: int, conc: int) -> float:
    done = 0

    async def client(i: int) -> None:
        nonlocal done
        token, uid = shoppers[i]
        auth = {"authorization": f"Bearer {token}"}
        # Its own loopback address: NGINX's per-IP rate limit applies per client.
        conn = aiohttp.TCPConnector(limit=1, local_addr=(user_address(1000 + i), 0))
        async with aiohttp.ClientSession(headers=auth, connector=conn) as s:
            n = 0
            while done < calls:
                done += 1
                n += 1
                if op == "AddItem":
                    if n % 40 == 0:
                        async with s.delete(f"{GATEWAY}/api/v1/carts/{uid}") as r:
                            await r.read()
                    body = {"product_id": f"p-{n % 40 + 1:04d}", "quantity": 1}
                    req = s.post(f"{GATEWAY}/api/v1/carts/{uid}/items", json=body)
                else:
                    req = s.get(f"{GATEWAY}/api/v1/carts/{uid}")
                async with req as r:
                    await r.read()
                    if r.status != 200:
                        raise BenchFailed(f"{op}: HTTP {r.status}")

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(conc)))
    return time.perf_counter() - t0


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    stack = StackHandle()
    stack.require("nginx", "envoy", "auth", "user", "cart")
    dsns = [stack.pg_dsn("cart"), stack.pg_dsn("cart", replica=True)]
    parts = Parts(stack, dsns)
    async with aiohttp.ClientSession() as s:
        shoppers = [await new_shopper(s) for _ in range(args.concurrency)]
    await phase("AddItem", shoppers, 200, args.concurrency)  # warm
    rounds = []
    for r in range(args.rounds):
        row: dict[str, Any] = {"round": r}
        for op in ("AddItem", "GetCart"):
            a = await parts.sample()
            wall = await phase(op, shoppers, args.calls, args.concurrency)
            b = await parts.sample()
            await asyncio.sleep(wall)  # the same length of time idle
            c = await parts.sample()
            row[op] = {
                "calls_per_s": round(args.calls / wall, 1),
                **{
                    f"{k}_us": round(((b[k] - a[k]) - (c[k] - b[k])) / args.calls * 1e6, 1)
                    for k in a
                },
            }
        rounds.append(row)
        print(row, flush=True)
    summary = {
        f"{op}.{k}": median_range(r[op][k] for r in rounds)
        for op in ("AddItem", "GetCart")
        for k in rounds[0][op]
    }
    return {
        "what": "CPU per cart call through NGINX -> Envoy (REST) -> the stack's cart service, "
        "by part, idle subtracted; closed loop, one cart per client",
        "params": {"calls": args.calls, "concurrency": args.concurrency, "rounds": args.rounds},
        "rounds": rounds,
        "summary": summary,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(write_result("cart_cost", run_main(main_async(args))))


if __name__ == "__main__":
    main()
