"""Product writes, base revision against the working tree in the same run: ReserveStock +
ReleaseStock pairs (the order saga's calls, as order: its own service identity) on two
private product services, one per side, each on the stack's PostgreSQL primary + replica.

A pair reserves one unit of a demo product under a fresh order id and releases it at once,
so the catalog's stock is the same after the run. Sides alternate per round (order
rotated); per point: a closed loop of --pairs pairs at --concurrency, the service process's
CPU per pair from /proc, and the primary's transactions per pair (pg_stat_database of the
product database: both sides share it, so each point is measured alone).

    python -m bench.product_write_ab [--base REV] [--rounds 4] [--pairs 300] [--concurrency 4]
        [--change NAME --note TEXT]
Writes bench/results/product_write_ab.json (`changes[NAME]` keeps an A/B; `latest` the run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from grpclib.client import Channel

from bench.common import (
    RESULTS,
    closed_loop,
    free_port,
    machine,
    median_range,
    proc_cpu_s,
    run_main,
    wait_grpc_serving,
)
from bench.notification_rig import Code, base_tree, stop
from services.runtime.auth.identity import ServiceIdentity, authenticate_channel
from shop.product.v1 import product_pb2 as pb
from shop.product.v1.product_grpc import ProductServiceStub
from shop.topology import POSTGRES_PRIMARY_PORT

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_ID = "p-0002"
PRIMARY = f"postgresql://shopmesh:shopmesh@127.0.0.1:{POSTGRES_PRIMARY_PORT}/product"


def _start(code: Code, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {
        **code.env(),
        "PRODUCT_GRPC_PORT": str(port),
        "PRODUCT_METRICS_PORT": str(free_port()),
        "PRODUCT_LOG_LEVEL": "warning",
        "PRODUCT_WORKERS": "1",
    }
    out = open(log, "ab")  # noqa: SIM115 (closed with the process by the OS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.product.main"],
        cwd=code.tree, env=env, stdout=out, stderr=out, start_new_session=True,
    )  # fmt: skip
    return proc, port


async def _xacts(pg: asyncpg.Connection) -> int:
    return int(
        await pg.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'product'"
        )
    )


async def _point(stub: ProductServiceStub, pid: int, pg: asyncpg.Connection, args) -> dict:
    async def pair(worker: int, i: int) -> None:
        oid = f"bench-w-{uuid.uuid4().hex[:16]}"
        line = pb.StockLine(product_id=PRODUCT_ID, quantity=1)
        try:
            await stub.ReserveStock(pb.ReserveStockRequest(order_id=oid, lines=[line]), timeout=5)
        finally:
            await stub.ReleaseStock(pb.ReleaseStockRequest(order_id=oid), timeout=5)

    await closed_loop(pair, args.concurrency, 30, max_calls=30, warmup=0)
    await asyncio.sleep(0.5)  # pg_stat_database is updated at the end of transactions
    x0, cpu0, t0 = await _xacts(pg), proc_cpu_s(pid), time.perf_counter()
    result = await closed_loop(pair, args.concurrency, 120, max_calls=args.pairs, warmup=0)
    cpu, wall = proc_cpu_s(pid) - cpu0, time.perf_counter() - t0
    await asyncio.sleep(0.6)
    x1 = await _xacts(pg)
    return {
        "pairs": result.calls,
        "pairs_per_s": round(result.calls / wall, 1),
        "p50_ms": round(result.p50_ms, 2),
        "cpu_us_per_pair": round(1e6 * cpu / result.calls, 1),
        "primary_xacts_per_pair": round((x1 - x0) / result.calls, 2),
    }


async def bench(args: argparse.Namespace, sides: dict[str, Code], log_dir: Path) -> dict:
    procs: dict[str, tuple[subprocess.Popen, int]] = {}
    channels: list[Channel] = []
    pg = await asyncpg.connect(PRIMARY)
    order = ServiceIdentity.from_env("order")
    try:
        stubs = {}
        for name, code in sides.items():
            procs[name] = _start(code, log_dir / f"product-{name}.log")
            await wait_grpc_serving(procs[name][1])
            ch = authenticate_channel(Channel("127.0.0.1", procs[name][1]), order)
            channels.append(ch)
            stubs[name] = ProductServiceStub(ch)
        rounds = []
        names = list(sides)
        for r in range(args.rounds):
            row: dict[str, Any] = {"round": r}
            for name in names[r % 2 :] + names[: r % 2]:
                row[name] = await _point(stubs[name], procs[name][0].pid, pg, args)
            row["cpu_ratio_new_over_base"] = round(
                row["new"]["cpu_us_per_pair"] / row["base"]["cpu_us_per_pair"], 3
            )
            print(json.dumps(row), flush=True)
            rounds.append(row)
    finally:
        for ch in channels:
            ch.close()
        for proc, _ in procs.values():
            stop(proc)
        await pg.close()
    summary = {
        name: {
            k: median_range(r[name][k] for r in rounds)
            for k in ("cpu_us_per_pair", "pairs_per_s", "p50_ms", "primary_xacts_per_pair")
        }
        for name in sides
    }
    summary["cpu_ratio_new_over_base"] = median_range(r["cpu_ratio_new_over_base"] for r in rounds)
    return {"summary": summary, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--change", default="")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    sha = subprocess.run(
        ["git", "rev-parse", "--short", args.base], cwd=ROOT, check=True, capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip
    sides = {"base": Code("base", base_tree(sha)), "new": Code("new", ROOT)}
    log_dir = Path("/tmp") / "product-write-ab"
    log_dir.mkdir(exist_ok=True)
    run = run_main(bench(args, sides, log_dir))
    run.update(
        when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        machine=machine(),
        sides={"base": sha, "new": "working tree"},
        settings={k: getattr(args, k) for k in ("rounds", "pairs", "concurrency")},
        note=args.note,
    )
    path = RESULTS / "product_write_ab.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data["what"] = __doc__.split("\n\n")[0].replace("\n", " ")
    data["latest"] = run
    if args.change:
        data.setdefault("changes", {})[args.change] = run
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(json.dumps(run["summary"], indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
