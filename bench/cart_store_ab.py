"""Cart store A/B (#26 item 1): the cart's use cases on PostgreSQL (the cart service's own
adapter, services/cart/repository.py: primary for writes, the streaming replica for reads
with read-your-writes) against the same use cases on Redis (Debian's redis-server, as
Online Boutique keeps its carts; a private instance with an append-only file, fsync every
second), side by side in the same run, alternating rounds.

Measured per operation: CPU of this process (the service side: use case, adapter, driver)
and CPU of the store (the redis-server process; the PostgreSQL backends of this process's
connections on the primary and the replica, from /proc). PostgreSQL's WAL writer, the
walsender and the replica's startup (replay) process are not counted: they are the price
of the replica, listed apart as `pg_background_us` (all of the cluster's, so an upper
bound: other engineers' load is in it too).

    python -m bench.cart_store_ab --ops 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import free_port, median_range, proc_cpu_s, run_main, write_result
from services.cart import service
from services.cart.config import CartConfig
from services.cart.domain import Cart
from services.cart.repository import SqlCartUnitOfWork, cart_of, encode_items
from services.runtime.db import Database
from services.runtime.metrics import Metrics

APP = "cart-store-ab"
CARTS = 50
PRODUCTS = 40


# ---------------------------------------------------------------- the Redis adapter


class RedisCarts:
    """The cart ports on Redis: one key per cart holding its update time and the same JSON
    as the PostgreSQL row; a change is WATCH + GET, then MULTI/SET/EXEC (optimistic: a
    concurrent change of the same cart fails the EXEC). Event ids: SET NX, a week's expiry."""

    def __init__(self, client: Any, pipe: Any = None) -> None:
        self.client = client
        self.pipe = pipe

    @staticmethod
    def key(user_id: str) -> str:
        return f"cart:{user_id}"

    @staticmethod
    def decode(user_id: str, raw: bytes | None) -> Cart:
        if raw is None:
            return Cart(user_id)
        when, items = raw.decode().split("\n", 1)
        return cart_of(user_id, items, datetime.fromisoformat(when))

    async def get(self, user_id: str) -> Cart:
        return self.decode(user_id, await self.client.get(self.key(user_id)))

    async def get_for_update(self, user_id: str) -> Cart:
        await self.pipe.watch(self.key(user_id))
        return self.decode(user_id, await self.pipe.get(self.key(user_id)))

    async def save(self, before: Cart, after: Cart) -> Cart:
        now = datetime.now(UTC)
        doc = f"{now.isoformat()}\n{encode_items(after.items)}"
        self.pipe.multi()
        self.pipe.set(self.key(after.user_id), doc)
        await self.pipe.execute()
        return Cart(after.user_id, after.items, now)

    async def first_time(self, event_id: str) -> bool:
        return bool(await self.client.set(f"cart-event:{event_id}", 1, nx=True, ex=7 * 86400))


class RedisCartUnitOfWork:
    def __init__(self, client: Any) -> None:
        self.client = client

    @asynccontextmanager
    async def write(self) -> AsyncIterator[RedisCarts]:
        async with self.client.pipeline(transaction=True) as pipe:
            yield RedisCarts(self.client, pipe)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[RedisCarts]:
        yield RedisCarts(self.client)


# ---------------------------------------------------------------- store CPU


async def pg_backends(dsn_primary: str, dsn_replica: str) -> list[int]:
    pids = []
    for dsn in (dsn_primary, dsn_replica):
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1", f"{APP}%"
            )
            pids += [r["pid"] for r in rows]
        finally:
            await conn.close()
    return pids


def pg_background_pids() -> list[int]:
    """WAL writer, walsender, the replica's startup process: the replica's running cost."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmd.startswith("postgres: ") and any(
            w in cmd for w in ("walwriter", "walsender", "startup recovering", "walreceiver")
        ):
            out.append(int(p.name))
    return out


def cpu_of(pids: list[int]) -> float:
    return sum(c for c in (proc_cpu_s(p) for p in pids) if c == c)


def start_redis(port: int, workdir: str) -> subprocess.Popen[bytes]:
    """A private redis-server on loopback, durable like a store: append-only, fsync 1/s."""
    return subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "yes", "--appendfsync", "everysec", "--dir", workdir,
         "--logfile", os.path.join(workdir, "redis.log")],
    )  # fmt: skip


# ---------------------------------------------------------------- one round


async def phase(side: str, uow: Any, ops: int, round_: int, store_pids: Any) -> dict[str, Any]:
    users = [f"ab-{side}-{os.getpid()}-{round_}-{i}" for i in range(CARTS)]
    out: dict[str, Any] = {}
    for op in ("AddItem", "GetCart"):
        pids = await store_pids()
        store0, bg0 = cpu_of(pids), cpu_of(pg_background_pids())
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i in range(ops):
            user = users[i % CARTS]
            if op == "AddItem":
                await service.add_item(user, f"p-{(i // CARTS) % PRODUCTS + 1:04d}", 1, uow())
            else:
                await service.get_cart(user, uow())
        cpu1, t1 = time.process_time(), time.perf_counter()
        store1, bg1 = cpu_of(await store_pids()), cpu_of(pg_background_pids())
        out[op] = {
            "service_us": round((cpu1 - cpu0) / ops * 1e6, 1),
            "store_us": round((store1 - store0) / ops * 1e6, 1),
            "total_us": round(((cpu1 - cpu0) + (store1 - store0)) / ops * 1e6, 1),
            "pg_background_us": round((bg1 - bg0) / ops * 1e6, 1),
            "latency_us": round((t1 - t0) / ops * 1e6, 1),
        }
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import redis.asyncio as aioredis

    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server not installed (apt-get install redis-server)")
    cfg = CartConfig.from_env()
    db = Database(cfg.db, Metrics(APP), service=APP)
    await db.open()
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="cart-ab-redis-")
    server = start_redis(port, workdir)
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        for _ in range(50):
            try:
                await client.ping()
                break
            except Exception:
                await asyncio.sleep(0.1)
        pg = cfg.db

        def dsn(replica: bool) -> str:
            host, p = (pg.replica_host, pg.replica_port) if replica else (pg.host, pg.primary_port)
            return f"postgresql://{pg.user}:{pg.password}@{host}:{p}/{pg.name}"

        async def pg_pids() -> list[int]:
            return await pg_backends(dsn(False), dsn(True))

        async def redis_pids() -> list[int]:
            return [server.pid]

        sides = {
            "postgres": (lambda: SqlCartUnitOfWork(db.unit_of_work()), pg_pids),
            "redis": (lambda: RedisCartUnitOfWork(client), redis_pids),
        }
        # Warm both (connections, prepared statements, imports) before measuring.
        for uow, pids in sides.values():
            await phase("warm", uow, 200, -1, pids)
        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            order = ["postgres", "redis"] if r % 2 == 0 else ["redis", "postgres"]
            row: dict[str, Any] = {"round": r, "loadavg_1m": round(os.getloadavg()[0], 2)}
            for side in order:
                uow, pids = sides[side]
                row[side] = await phase(side, uow, args.ops, r, pids)
            rounds.append(row)
            print(json.dumps(row), flush=True)
    finally:
        await client.aclose()
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
        await db.close()
    summary: dict[str, Any] = {}
    for op in ("AddItem", "GetCart"):
        for side in ("postgres", "redis"):
            for k in ("service_us", "store_us", "total_us", "latency_us", "pg_background_us"):
                summary[f"{op}.{side}.{k}"] = median_range(r[side][op][k] for r in rounds)
        summary[f"{op}.total_ratio_postgres_vs_redis"] = median_range(
            r["postgres"][op]["total_us"] / max(r["redis"][op]["total_us"], 1e-9) for r in rounds
        )
    return {"ops_per_round": args.ops, "rounds": rounds, "summary": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=1000, help="AddItem and GetCart calls per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    data = run_main(main_async(args))
    data["what"] = (
        "CPU per cart operation (use case + adapter + driver in this process, plus the store's "
        "own process(es)), PostgreSQL primary+replica vs Redis, same run, alternating rounds, "
        "C=1, 50 carts x 40 products"
    )
    print(write_result("cart_store_ab", data))


if __name__ == "__main__":
    main()
