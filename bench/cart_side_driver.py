"""The side driver of bench/cart_write_ab.py, run as `python -c <this file's text>` with
PYTHONPATH set to one tree (a base worktree or the new code): the cart's use cases with that
tree's PostgreSQL adapter (services/cart/repository.py) against the stack's cart database,
as the service runs them, and writes per operation: this process's CPU, the CPU of its own
PostgreSQL backends (primary and replica, by application_name), latency p50/p99, and how
many changes the store saw (pg_stat_database xact_commit: transactions per operation).
It must only use what both trees have (service.add_item/get_cart, SqlCartUnitOfWork,
Database, Metrics, CartConfig). Not imported: it runs when executed.

Phases, after a warm-up: `add` (AddItem, C=1, 50 carts, as in bench/cart_store_ab.py),
`get` (GetCart, C=1, of the carts `add` filled), `contended` (AddItem from 8 concurrent
callers on 2 carts: the shop mix's shared accounts, where a locked change queues).
"""

import asyncio
import inspect
import json
import os
import sys
import time
from pathlib import Path

import asyncpg

from services.cart import service
from services.cart.config import CartConfig
from services.cart.repository import SqlCartUnitOfWork
from services.runtime.db import Database
from services.runtime.metrics import Metrics

OPS, OUT, APP, TAG = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
TICK = os.sysconf("SC_CLK_TCK")
CARTS, PRODUCTS = 50, 40


def proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else 0.0


async def main() -> dict:
    cfg = CartConfig.from_env()
    pg = cfg.db
    dsns = [
        f"postgresql://{pg.user}:{pg.password}@{pg.host}:{pg.primary_port}/{pg.name}",
        f"postgresql://{pg.user}:{pg.password}@{pg.replica_host}:{pg.replica_port}/{pg.name}",
    ]
    admin = await asyncpg.connect(dsns[0])
    db = Database(cfg.db, Metrics(APP), service=APP)
    await db.open()

    # A tree whose unit of work takes the process's per-cart queues gets one set, as the
    # service (CartApp) gives it; the base's takes none.
    shared = {}
    if "queues" in inspect.signature(SqlCartUnitOfWork).parameters:
        from services.cart.repository import CartQueues

        shared["queues"] = CartQueues()

    def uow() -> SqlCartUnitOfWork:
        return SqlCartUnitOfWork(db.unit_of_work(), **shared)

    async def backends() -> list[int]:
        pids = []
        for dsn in dsns:
            conn = await asyncpg.connect(dsn)
            try:
                rows = await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1", f"{APP}%"
                )
                pids += [r["pid"] for r in rows]
            finally:
                await conn.close()
        return pids

    async def commits() -> int:
        # Our own commits only can't be told apart from other engineers' here: counted
        # over the whole database, an upper bound (reported, not used in the ratios).
        return await admin.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", pg.name
        )

    async def run(phase: str, ops: int, conc: int, carts: int) -> dict:
        # GetCart reads the carts the add phase filled (20 lines each at 1,000 adds).
        users = [
            f"ab-{TAG}-{os.getpid()}-{'add' if phase == 'get' else phase}-{i}" for i in range(carts)
        ]
        lat: list[float] = []
        done = 0

        async def worker(w: int) -> None:
            nonlocal done
            while done < ops:
                i = done
                done += 1
                user = users[i % carts]
                t = time.perf_counter()
                if phase == "get":
                    await service.get_cart(user, uow())
                else:
                    if i % (carts * PRODUCTS) == carts * PRODUCTS - 1:
                        await service.empty_cart(user, uow())
                    product = f"p-{(i // carts) % PRODUCTS + 1:04d}"
                    await service.add_item(user, product, 1, uow())
                lat.append(time.perf_counter() - t)

        pids = await backends()
        store0, c0 = sum(proc_cpu(p) for p in pids), await commits()
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(conc)))
        cpu1, t1 = time.process_time(), time.perf_counter()
        # Backends the phase opened (a pool growing to `conc`) count whole: born in it.
        store1, c1 = sum(proc_cpu(p) for p in set(pids) | set(await backends())), await commits()
        return {
            "service_us": round((cpu1 - cpu0) / ops * 1e6, 1),
            "store_us": round((store1 - store0) / ops * 1e6, 1),
            "total_us": round(((cpu1 - cpu0) + (store1 - store0)) / ops * 1e6, 1),
            "ops_per_s": round(ops / (t1 - t0), 1),
            "p50_ms": round(pct(lat, 50) * 1000, 2),
            "p99_ms": round(pct(lat, 99) * 1000, 2),
            "db_commits_per_op": round((c1 - c0) / ops, 2),
        }

    try:
        await run("warm", 200, 1, CARTS)
        out = {
            "add": await run("add", OPS, 1, CARTS),
            "get": await run("get", OPS, 1, CARTS),
            "contended": await run("contended", OPS, 8, 2),
        }
    finally:
        await db.close()
        await admin.close()
    return out


Path(OUT).write_text(json.dumps(asyncio.run(main())))
