"""A shopper's cart change, locked transaction (the code before a80ac1e: BEGIN, locked read,
UPDATE, COMMIT, flush LSN) against compare-and-set (read, one conditional upsert, flush LSN:
services/cart/service.py), interleaved in one process in blocks of --block AddItems, so the
machine's load swings hit both sides alike (bench/cart_write_ab.py compares revisions in
separate processes and its same-code run scatters +-20% at load 8-10).

The locked side is the old use case verbatim over today's adapter (get_for_update/save are
unchanged). Per block: this process's CPU and its PostgreSQL backends' CPU (/proc, the
primary's and the replica's sessions of this process); per round the CPU per AddItem of each
side and their ratio, over --rounds rounds of --ops AddItems per side, C=1, 50 carts.

    python -m bench.cart_change_ab [--ops 2000] [--rounds 5] [--block 50]
Writes a named entry of bench/results/cart_write_ab.json.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from bench.cart_store_ab import cpu_of
from bench.common import machine, median_range, record_entry, run_main
from services.cart import service
from services.cart.config import CartConfig
from services.cart.domain import Cart
from services.cart.ports import CartUnitOfWork
from services.cart.repository import CartQueues, SqlCartUnitOfWork
from services.runtime.db import Database
from services.runtime.metrics import Metrics

APP = "cart-change-ab"
CARTS, PRODUCTS = 50, 40


async def locked_change(user_id: str, uow: CartUnitOfWork, op: Callable[[Cart], Cart]) -> Cart:
    """The change as it was before a80ac1e."""
    async with uow.write() as repo:
        before = await repo.get_for_update(user_id)
        after = op(before)
        if after == before:
            return before
        return await repo.save(before, after)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    cfg = CartConfig.from_env()
    db = Database(cfg.db, Metrics(APP), service=APP)
    await db.open()
    pg = cfg.db
    dsns = [
        f"postgresql://{pg.user}:{pg.password}@{pg.host}:{pg.primary_port}/{pg.name}",
        f"postgresql://{pg.user}:{pg.password}@{pg.replica_host}:{pg.replica_port}/{pg.name}",
    ]
    queues = CartQueues()

    def uow() -> SqlCartUnitOfWork:
        return SqlCartUnitOfWork(db.unit_of_work(), queues)

    sides: dict[str, Any] = {
        "locked": lambda u, p: locked_change(u, uow(), lambda c: c.add(p, 1)),
        "compare_and_set": lambda u, p: service.add_item(u, p, 1, uow()),
    }
    n = {s: 0 for s in sides}
    pids: list[int] = []

    async def backends() -> list[int]:
        out = []
        for dsn in dsns:
            conn = await asyncpg.connect(dsn)
            try:
                rows = await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1", f"{APP}%"
                )
                out += [r["pid"] for r in rows]
            finally:
                await conn.close()
        return out

    async def block(side: str, ops: int, round_: int) -> tuple[float, float]:
        # C=1: the sessions stay the ones found after the warm-up (asked again per round).
        store0, cpu0 = cpu_of(pids), time.process_time()
        for _ in range(ops):
            i = n[side]
            n[side] += 1
            user = f"ab-{side}-{os.getpid()}-{round_}-{i % CARTS}"
            await sides[side](user, f"p-{(i // CARTS) % PRODUCTS + 1:04d}")
        cpu1 = time.process_time()
        return cpu1 - cpu0, cpu_of(pids) - store0

    rounds: list[dict[str, Any]] = []
    try:
        for side in sides:  # warm: connections, prepared statements
            await block(side, 200, -1)
        for r in range(args.rounds):
            pids[:] = await backends()
            got = {s: [0.0, 0.0] for s in sides}
            t0 = time.perf_counter()
            for b in range(args.ops // args.block):
                order = list(sides) if b % 2 == 0 else list(reversed(sides))
                for side in order:
                    svc, store = await block(side, args.block, r)
                    got[side][0] += svc
                    got[side][1] += store
            row: dict[str, Any] = {"round": r, "loadavg_1m": round(os.getloadavg()[0], 2)}
            for side, (svc, store) in got.items():
                row[side] = {
                    "service_us": round(svc / args.ops * 1e6, 1),
                    "store_us": round(store / args.ops * 1e6, 1),
                    "total_us": round((svc + store) / args.ops * 1e6, 1),
                }
            for k in ("service_us", "total_us"):
                row[f"{k}_ratio"] = round(row["compare_and_set"][k] / row["locked"][k], 3)
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rounds.append(row)
            print(row, flush=True)
    finally:
        await db.close()
    summary: dict[str, Any] = {}
    for k in ("service_us", "total_us"):
        summary[f"{k}_compare_and_set_over_locked"] = median_range(r[f"{k}_ratio"] for r in rounds)
        for side in sides:
            summary[f"{side}.{k}"] = median_range(r[side][k] for r in rounds)
    return {
        "what": "AddItem C=1 over 50 carts, locked transaction (the pre-a80ac1e use case) vs "
        "compare-and-set, interleaved in one process in blocks; CPU of this process and of "
        "its PostgreSQL backends per AddItem",
        "params": vars(args),
        "summary": summary,
        "rounds": rounds,
        "machine": machine(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=2000, help="AddItems per side per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, default=50)
    ap.add_argument("--name", default="interleaved_in_one_process")
    args = ap.parse_args()
    entry = run_main(main_async(args))
    print(entry["summary"])
    print(record_entry("cart_write_ab", "runs", args.name, entry))


if __name__ == "__main__":
    main()
