"""CPU per catalog read by part, under ../shared/tools/cpu_by_part.py: the product service
and PostgreSQL (primary and replica backends of its database) per GetProduct and per
ListProducts(20), for each variant of the read path, side by side in one run.

Each variant is a private product service (free ports, pinned to core 0) over a scratch
database `product_cpu` (created with the demo catalog, dropped afterwards), so PostgreSQL's
CPU for it is its own in cpu_by_part's grouping (backends by database):
- base: the code of --base REV (a worktree, as hot_rpc's *_base configs): the old path;
- sqla: the current code, cache off, the reads through SQLAlchemy Core;
- raw: cache off, GetProduct/ListProducts as prepared statements on raw asyncpg;
- cache: the default: the read-through catalog cache on.

Per round, per RPC, per variant: `cpu_by_part.py -- python -m bench.catalog_cpu load ...`
runs a fixed number of calls (closed loop, one grpc.aio client on core 1, no warm-up
excluded: every call of the window counts). PostgreSQL's CPU is cpu_by_part's groups
pg-primary:product_cpu and pg-replica:product_cpu (0.1 s resolution: size the windows);
the product service's is read from /proc for the variant's own process over the same
window, because cpu_by_part's "product" group also holds the stack's product service,
which other work on the machine may be loading. An idle window (`-- sleep`) with every
variant up comes first in each round; its rates are subtracted from each loaded window.

    python -m bench.catalog_cpu --base REV [--rounds 2] [--get-calls 8000]
        [--list-calls 4000] [--concurrency 16]
Writes bench/results/catalog_cpu.json.

    python -m bench.catalog_cpu --base REV --name NAME --variants base,cache
        [--rpcs GetProduct,ListProducts,ListCategories] [--note TEXT]
A named same-run A/B of chosen variants and RPCs (ListCategories too): kept as
bench/results/catalog_cpu_ab.json runs[NAME] (catalog_cpu.json untouched).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import (
    ROOT,
    BenchFailed,
    closed_loop,
    free_port,
    git_head,
    machine,
    median_range,
    pin_self,
    pinned,
    proc_cpu_s,
    record_entry,
    wait_grpc_serving,
    write_result,
)
from bench.hot_rpc import Client, base_tree
from shop.product.v1 import product_pb2 as pb
from stack import postgres

TOOL = Path(os.environ.get("CPU_BY_PART", ROOT.parent / "shared" / "tools" / "cpu_by_part.py"))
DB = "product_cpu"
VARIANTS = ("base", "sqla", "raw", "cache")
RPCS = ("GetProduct", "ListProducts", "ListCategories")
VARIANT_ENV = {
    "base": {},
    "sqla": {"PRODUCT_CACHE_ENABLED": "false", "PRODUCT_DB_RAW_READS": "false"},
    "raw": {"PRODUCT_CACHE_ENABLED": "false"},
    "cache": {},
}
PARTS = {"product": "product", "pg-primary:" + DB: "pg_primary", "pg-replica:" + DB: "pg_replica"}
LINE = re.compile(r"^\s+(.+?)\s+([0-9.]+) s\s+[0-9.]+%$")


def admin_dsn(replica: bool = False) -> str:
    port = postgres.replica_port() if replica else postgres.primary_port()
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


async def create_db() -> None:
    conn = await asyncpg.connect(admin_dsn())
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {DB} OWNER shopmesh")
    finally:
        await conn.close()
    env = {**os.environ, "PRODUCT_DB_NAME": DB, "SHOPMESH_ENV": "dev"}
    loader = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.product.demo", cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = await loader.communicate()
    if loader.returncode:
        raise BenchFailed(f"demo loader failed on {DB}: {err.decode()[-500:]}")
    primary = await asyncpg.connect(postgres.dsn(DB))
    replica = await asyncpg.connect(postgres.dsn(DB, replica=True))
    try:  # the variants read the replica: wait until it has the catalog
        target = await primary.fetchval("SELECT pg_current_wal_lsn()")
        for _ in range(1500):
            if await replica.fetchval("SELECT pg_last_wal_replay_lsn()") >= target:
                return
            await asyncio.sleep(0.02)
        raise BenchFailed("replica did not replay the scratch catalog")
    finally:
        await primary.close()
        await replica.close()


async def drop_db() -> None:
    conn = await asyncpg.connect(admin_dsn())
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    finally:
        await conn.close()


def start(variant: str, base: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "PRODUCT_GRPC_PORT": str(port),
        "PRODUCT_METRICS_PORT": str(free_port()),
        "PRODUCT_MIGRATE_ON_START": "false",
        "PRODUCT_DB_NAME": DB,
        "PRODUCT_WORKERS": "1",  # one process per variant (a runtime without workers ignores it)
        "SHOPMESH_TRACE_DIR": str(tmp / "traces"),
        **VARIANT_ENV[variant],
    }
    cwd = ROOT
    if variant == "base":
        cwd = base
        env["PYTHONPATH"] = str(base)
    log = open(tmp / f"{variant}.log", "wb")  # noqa: SIM115
    cmd = pinned([sys.executable, "-m", "services.product.main"], 0)
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=log), port


def by_part(argv: list[str]) -> tuple[float, dict[str, float], int]:
    """Run argv under cpu_by_part.py: (window seconds, CPU seconds per part we track,
    the calls the load printed)."""
    done = subprocess.run(
        [sys.executable, str(TOOL), "--", *argv], cwd=ROOT, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    if done.returncode:
        raise BenchFailed(f"load failed: {done.stderr[-800:]}")
    head = re.search(r"window ([0-9.]+) s", done.stdout)
    if head is None:
        raise BenchFailed(f"cpu_by_part printed no window: {done.stdout[-400:]}")
    parts = {v: 0.0 for v in PARTS.values()}
    for line in done.stdout.splitlines():
        m = LINE.match(line)
        if m and m.group(1) in PARTS:
            parts[PARTS[m.group(1)]] = float(m.group(2))
    calls = re.search(r"^calls (\d+)$", done.stdout, re.M)
    return float(head.group(1)), parts, int(calls.group(1)) if calls else 0


async def load(port: int, rpc: str, calls: int, concurrency: int) -> None:
    """The load command (run under cpu_by_part): exactly `calls` calls, all counted."""
    pin_self(1)
    client = Client(port)
    try:
        ids = [f"p-{i:04d}" for i in range(1, 21)]  # demo ids are p-0001...
        if rpc == "GetProduct":
            reqs = [pb.GetProductRequest(id=i) for i in ids]

            async def call(w: int, i: int) -> Any:
                return await client.get(reqs[(w * 7 + i) % len(reqs)], timeout=30)
        elif rpc == "ListCategories":
            categories = client.channel.unary_unary(
                "/shop.product.v1.ProductService/ListCategories",
                request_serializer=pb.ListCategoriesRequest.SerializeToString,
                response_deserializer=pb.ListCategoriesResponse.FromString,
            )
            creq = pb.ListCategoriesRequest()

            async def call(w: int, i: int) -> Any:
                return await categories(creq, timeout=30)
        else:
            req = pb.ListProductsRequest(page_size=20)

            async def call(w: int, i: int) -> Any:
                return await client.list(req, timeout=30)

        res = await closed_loop(call, concurrency, 600, calls, warmup=0, what=f"{rpc} load")
        if res.calls < calls:
            raise BenchFailed(f"{rpc}: {res.calls} of {calls} calls in the window")
        print(f"calls {res.calls}", flush=True)  # a few more than asked: those in flight
    finally:
        await client.close()


async def bench(args: argparse.Namespace, tmp: Path, base: Path) -> dict[str, Any]:
    await create_db()
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    windows: list[dict[str, Any]] = []
    try:
        for v in args.variants:
            procs[v] = start(v, base, tmp)
        for _, port in procs.values():
            await wait_grpc_serving(port, 90)
            client = Client(port)  # warm: pools, prepared statements, caches
            try:
                for _ in range(50):
                    await client.get(pb.GetProductRequest(id="p-0001"), timeout=10)
                    await client.list(pb.ListProductsRequest(page_size=20), timeout=10)
            finally:
                await client.close()
        for rnd in range(args.rounds):
            own0 = {v: proc_cpu_s(p.pid) for v, (p, _) in procs.items()}
            secs, idle, _ = by_part(["sleep", str(args.idle_s)])
            for v, (p, _) in procs.items():  # each variant's own idle rate (health checks)
                idle[f"product:{v}"] = proc_cpu_s(p.pid) - own0[v]
            idle_rate = {k: x / secs for k, x in idle.items()}
            windows.append({"round": rnd, "kind": "idle", "seconds": secs, "cpu_s": idle})
            vs = args.variants
            order = vs[rnd % len(vs) :] + vs[: rnd % len(vs)]
            asks = {"GetProduct": args.get_calls, "ListProducts": args.list_calls,
                    "ListCategories": args.list_calls}  # fmt: skip
            for rpc in args.rpcs:
                asked = asks[rpc]
                for v in order:
                    cmd = [sys.executable, "-m", "bench.catalog_cpu", "load", "--port",
                           str(procs[v][1]), "--rpc", rpc, "--calls", str(asked),
                           "--concurrency", str(args.concurrency)]  # fmt: skip
                    own = proc_cpu_s(procs[v][0].pid)
                    secs, cpu, calls = by_part(cmd)
                    if not calls:
                        raise BenchFailed(f"{rpc} load on {v} printed no call count")
                    cpu["product_group"] = cpu.pop("product")  # the stack's service too
                    cpu["product"] = proc_cpu_s(procs[v][0].pid) - own
                    rate = {**idle_rate, "product": idle_rate[f"product:{v}"],
                            "product_group": idle_rate["product"]}  # fmt: skip
                    net = {k: max(0.0, cpu[k] - rate[k] * secs) for k in cpu}
                    per_call = {k: round(net[k] / calls * 1e6, 1) for k in net}
                    windows.append({"round": rnd, "kind": "load", "variant": v, "rpc": rpc,
                                    "calls": calls, "seconds": secs, "cpu_s": cpu,
                                    "us_per_call": per_call})  # fmt: skip
                    parts = "  ".join(f"{k} {x:.0f}" for k, x in per_call.items())
                    print(f"r{rnd} {rpc:<12} {v:<6} {calls / secs:7.1f}/s  us/call {parts}",
                          flush=True)  # fmt: skip
    finally:
        for p, _ in procs.values():
            p.terminate()
        for p, _ in procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        await drop_db()
    return summarize(windows, args)


def summarize(windows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    loads = [w for w in windows if w["kind"] == "load"]
    cells = []
    for rpc in args.rpcs:
        for v in args.variants:
            mine = [w for w in loads if (w["rpc"], w["variant"]) == (rpc, v)]
            cell: dict[str, Any] = {"rpc": rpc, "variant": v}
            for part in (*PARTS.values(), "pg_total", "total"):
                vals = []
                for w in mine:
                    u = w["us_per_call"]
                    pg = u["pg_primary"] + u["pg_replica"]
                    vals.append({"pg_total": pg, "total": pg + u["product"]}.get(part, u.get(part)))
                cell[f"{part}_us_per_call"] = median_range(vals, 1)
            base = [w for w in loads if (w["rpc"], w["variant"]) == (rpc, "base")]
            ratios = [
                (b["us_per_call"]["product"] / w["us_per_call"]["product"])
                for w in mine for b in base
                if b["round"] == w["round"] and w["us_per_call"]["product"] > 0
            ]  # fmt: skip
            cell["product_cpu_ratio_base_over_this"] = median_range(ratios)
            cells.append(cell)
    return {
        "what": "CPU per call by part of a private product service per read-path variant "
        "over a scratch database, idle rates subtracted: product = the variant's process "
        "(/proc), pg_primary / pg_replica = PostgreSQL backends of that database "
        "(cpu_by_part.py groups, 0.1 s resolution); fixed call counts, closed loop; "
        "median (min-max) over rounds",
        "settings": {k: v for k, v in vars(args).items() if k != "cmd"},
        "cells": cells,
        "windows": windows,
    }


def table(r: dict[str, Any]) -> str:
    from bench.common import fmt_range

    lines = ["| RPC | variant | product µs/call | PG primary µs/call | PG replica µs/call | "
             "product CPU ratio base/this |", "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for c in r["cells"]:
        lines.append(
            f"| {c['rpc']} | {c['variant']} | {fmt_range(c['product_us_per_call'], 0)} | "
            f"{fmt_range(c['pg_primary_us_per_call'], 0)} | "
            f"{fmt_range(c['pg_replica_us_per_call'], 0)} | "
            f"{fmt_range(c['product_cpu_ratio_base_over_this'])} |"
        )
    return "\n".join(lines)


def ab_cells(r: dict[str, Any]) -> dict[str, str]:
    """One line per RPC and variant (the report shows a named run's figures flat)."""
    from bench.common import fmt_range

    return {
        f"{c['rpc']} {c['variant']}": (
            f"product {fmt_range(c['product_us_per_call'], 0)} us/call, PG primary "
            f"{fmt_range(c['pg_primary_us_per_call'], 0)}, PG replica "
            f"{fmt_range(c['pg_replica_us_per_call'], 0)}; product CPU base/this "
            f"{fmt_range(c['product_cpu_ratio_base_over_this'])}"
        )
        for c in r["cells"]
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        ap = argparse.ArgumentParser()
        ap.add_argument("cmd")
        ap.add_argument("--port", type=int, required=True)
        ap.add_argument("--rpc", required=True)
        ap.add_argument("--calls", type=int, required=True)
        ap.add_argument("--concurrency", type=int, default=16)
        a = ap.parse_args()
        asyncio.run(load(a.port, a.rpc, a.calls, a.concurrency))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision of the old path")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--get-calls", type=int, default=8000)
    ap.add_argument("--list-calls", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--idle-s", type=float, default=5.0)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    ap.add_argument("--rpcs", default="GetProduct,ListProducts", help="comma-separated")
    ap.add_argument("--name", default="", help="keep as catalog_cpu_ab.json runs[NAME]")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    args.variants = tuple(v for v in args.variants.split(",") if v)
    args.rpcs = tuple(r for r in args.rpcs.split(",") if r)
    if not set(args.variants) <= set(VARIANTS) or not set(args.rpcs) <= set(RPCS):
        raise BenchFailed(f"variants among {VARIANTS}, RPCs among {RPCS}")
    started = time.time()
    if not TOOL.exists():
        raise BenchFailed(f"{TOOL} not found (kept beside the repo, in ../shared/tools)")
    base = base_tree(args.base)
    head = git_head()  # the tree measured (commit your change before the run)
    with tempfile.TemporaryDirectory(prefix="catalog-cpu-") as tmp:
        result = asyncio.run(bench(args, Path(tmp), base))
    if args.name:
        result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "base": args.base, "new": head, "note": args.note,
                  "per_call": ab_cells(result), "machine": machine(), **result}  # fmt: skip
        path = record_entry("catalog_cpu_ab", "runs", args.name, result)
    else:
        path = write_result("catalog_cpu", result)
    print(table(result))
    print(f"wrote {path.relative_to(ROOT)} ({time.time() - started:.0f}s)")


if __name__ == "__main__":
    main()
