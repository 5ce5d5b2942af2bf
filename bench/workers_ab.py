"""Workers A/B: one service with `<SERVICE>_WORKERS=1` vs `2` (same code, same run,
interleaved rounds), to decide where worker processes pay.

Configs (the product service, as in hot_rpc): `service_db` = services.product.main on the
stack's PostgreSQL (primary + replica), `runtime_mem` = the same handlers and runtime with
the catalog in memory. Each is started once per worker count on private ports, unpinned
(a worker count is about cores, so the scheduler places the processes); the client is one
grpc.aio process with `--connections` HTTP/2 connections (SO_REUSEPORT spreads connections,
not calls, over the workers; a single connection always lands on one worker).

Per cell: calls/s and its ratio W/1 computed within each round (median, min-max over
rounds), server CPU per call summed over the supervisor and its workers, and the RSS of all
of the service's processes. On the 2-core dev machine the client shares the cores with the
workers, so the ratio is what the stack itself can gain, not a per-core ceiling.

    python -m bench.workers_ab [--configs service_db,runtime_mem] [--workers 1,2]
        [--concurrency 16,64] [--rounds 3] [--seconds 3] [--connections 8]
Writes bench/results/workers_ab.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    BenchFailed,
    Result,
    closed_loop,
    free_port,
    median_range,
    proc_cpu_s,
    wait_grpc_serving,
    write_result,
)
from bench.hot_rpc import NEW_DB_ENV, load_catalog, upb_products, verify
from shop.product.v1 import product_pb2 as pb
from shop.topology import SERVICES

SERVICE = "/shop.product.v1.ProductService"
MAX_CALLS = 80_000


class Clients:
    """grpc.aio clients over `n` channels (connections); caller w uses channel w % n."""

    def __init__(self, port: int, n: int) -> None:
        import grpc

        self.channels = [
            grpc.aio.insecure_channel(
                f"127.0.0.1:{port}",
                # one subchannel per channel object: no sharing between them
                options=[("grpc.use_local_subchannel_pool", 1)],
            )
            for _ in range(n)
        ]
        self.get = [
            ch.unary_unary(
                f"{SERVICE}/GetProduct",
                request_serializer=pb.GetProductRequest.SerializeToString,
                response_deserializer=pb.GetProductResponse.FromString,
            )
            for ch in self.channels
        ]
        self.list = [
            ch.unary_unary(
                f"{SERVICE}/ListProducts",
                request_serializer=pb.ListProductsRequest.SerializeToString,
                response_deserializer=pb.ListProductsResponse.FromString,
            )
            for ch in self.channels
        ]

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()


def tree_pids(pid: int) -> list[int]:
    """The process and its children (the supervisor and its workers)."""
    out = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for k in kids:
        out += tree_pids(int(k))
    return out


def rss_mib(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


class Server:
    def __init__(self, config: str, workers: int, tmp: Path, data_file: Path) -> None:
        self.config, self.workers = config, workers
        self.port = free_port()
        env = {
            **os.environ,
            "PRODUCT_GRPC_PORT": str(self.port),
            "PRODUCT_METRICS_PORT": str(free_port()),
            "PRODUCT_MIGRATE_ON_START": "false",
            "PRODUCT_WORKERS": str(workers),
            "SHOPMESH_TRACE_DIR": str(tmp / "traces"),
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if config == "runtime_mem":
            cmd = [sys.executable, "-m", "bench.hot_rpc", "--serve", "runtime_mem",
                   "--port", str(self.port), "--data", str(data_file)]  # fmt: skip
        elif config == "service_db":
            env.update(NEW_DB_ENV)
            cmd = [sys.executable, "-m", "services.product.main"]
        else:
            raise BenchFailed(f"unknown config {config}")
        self.log = open(tmp / f"{config}-w{workers}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=self.log)

    @property
    def name(self) -> str:
        return f"{self.config}_w{self.workers}"

    def cpu_s(self) -> float:
        return sum(proc_cpu_s(p) for p in tree_pids(self.proc.pid))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def measure(
    server: Server, rpc: str, c: int, seconds: float, conns: int, ids: list[str]
) -> dict[str, Any]:
    clients = Clients(server.port, conns)
    try:
        if rpc == "GetProduct":
            reqs = [pb.GetProductRequest(id=i) for i in ids]

            async def call(w: int, i: int) -> Any:
                return await clients.get[w % conns](reqs[(w * 7 + i) % len(reqs)], timeout=10)
        else:
            req = pb.ListProductsRequest(page_size=20)

            async def call(w: int, i: int) -> Any:
                return await clients.list[w % conns](req, timeout=10)

        warmup = min(1.0, seconds / 3)
        mark: list[tuple[float, float]] = []
        asyncio.get_running_loop().call_later(
            warmup, lambda: mark.append((server.cpu_s(), time.perf_counter()))
        )
        res: Result = await closed_loop(
            call, c, seconds, MAX_CALLS, warmup=warmup, what=f"{server.name} {rpc} C={c}"
        )
        cpu1 = server.cpu_s()
        cpu0, _ = mark[0] if mark else (cpu1, 0.0)
        res.extra["server_cpu_us_per_call"] = round((cpu1 - cpu0) / res.calls * 1e6, 1)
        res.extra["rss_mib"] = rss_mib(tree_pids(server.proc.pid))
        res.extra["processes"] = len(tree_pids(server.proc.pid))
    finally:
        await clients.close()
    return {"config": server.config, "workers": server.workers, "rpc": rpc, **res.as_dict()}


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    data = await load_catalog(args.catalog_port)
    data_file = tmp / "catalog.json"
    data_file.write_text(json.dumps(data))
    ids = [p.id for p in upb_products(data)]
    servers = [Server(c, w, tmp, data_file) for c in args.configs for w in args.workers]
    points: list[dict[str, Any]] = []
    try:
        for s in servers:
            await wait_grpc_serving(s.port, 90)
        await asyncio.sleep(1.0)  # every worker up, not only the first that answered
        for s in servers:
            clients = Clients(s.port, 1)
            try:
                check = type("C", (), {"get": clients.get[0], "list": clients.list[0]})()
                await verify(s.name, check, data, exact=s.config == "runtime_mem")  # type: ignore[arg-type]
            finally:
                await clients.close()
        for rnd in range(args.rounds):
            order = servers[rnd % len(servers) :] + servers[: rnd % len(servers)]
            for rpc in ("GetProduct", "ListProducts"):
                for c in args.concurrency:
                    for s in order:
                        p = await measure(s, rpc, c, args.seconds, args.connections, ids)
                        p["round"] = rnd
                        points.append(p)
                        print(
                            f"r{rnd} {rpc:<12} C={c:<3} {s.name:<16} {p['per_s']:>8.1f}/s "
                            f"p99 {p['p99_ms']:.1f} ms  {p['server_cpu_us_per_call']} us/call "
                            f"rss {p['rss_mib']} MiB ({p['processes']} processes)",
                            flush=True,
                        )
    finally:
        for s in servers:
            s.stop()
    return summarize(points, args)


def summarize(points: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    base_w = min(args.workers)
    cells, summary = [], {}
    for config in args.configs:
        for rpc in ("GetProduct", "ListProducts"):
            for c in args.concurrency:
                for w in args.workers:
                    mine = [p for p in points if (p["config"], p["rpc"], p["concurrency"],
                            p["workers"]) == (config, rpc, c, w)]  # fmt: skip
                    ratios = []
                    for p in mine:
                        base = next(q for q in points if (q["config"], q["rpc"], q["concurrency"],
                                    q["workers"], q["round"]) == (config, rpc, c, base_w,
                                                                  p["round"]))  # fmt: skip
                        ratios.append(p["per_s"] / base["per_s"])
                    cell = {
                        "config": config, "rpc": rpc, "concurrency": c, "workers": w,
                        "per_s": median_range((p["per_s"] for p in mine), 1),
                        f"ratio_vs_{base_w}_worker": median_range(ratios),
                        "p99_ms": median_range(p["p99_ms"] for p in mine),
                        "server_cpu_us_per_call": median_range(
                            (p["server_cpu_us_per_call"] for p in mine), 1),
                        "rss_mib": median_range((p["rss_mib"] for p in mine), 1),
                    }  # fmt: skip
                    cells.append(cell)
                    if w != base_w:
                        r = cell[f"ratio_vs_{base_w}_worker"]
                        summary[f"{rpc} C={c} {config}: calls/s {w} vs {base_w} worker(s)"] = (
                            f"x{r['median']} ({r['min']}-{r['max']}); "
                            f"{cell['per_s']['median']}/s, "
                            f"{cell['server_cpu_us_per_call']['median']} us CPU/call, "
                            f"{cell['rss_mib']['median']} MiB"
                        )
                    else:
                        summary[f"{rpc} C={c} {config}: {w} worker(s)"] = (
                            f"{cell['per_s']['median']}/s, "
                            f"{cell['server_cpu_us_per_call']['median']} us CPU/call, "
                            f"{cell['rss_mib']['median']} MiB"
                        )
    return {
        "what": __doc__.split("\n\n")[0].replace("\n", " "),
        "settings": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "workers": args.workers,
            "configs": args.configs,
            "connections": args.connections,
            "setup": "servers unpinned, one grpc.aio client process, interleaved rounds",
        },
        "summary": summary,
        "cells": cells,
        "points": points,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="service_db,runtime_mem")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--concurrency", default="16,64")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument(
        "--catalog-port",
        type=int,
        default=int(os.environ.get("PRODUCT_PORT", SERVICES["product"].port)),
    )
    args = ap.parse_args()
    args.configs = [c for c in args.configs.split(",") if c]
    args.workers = [int(w) for w in args.workers.split(",")]
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="workers-ab-") as tmp:
        result = asyncio.run(bench(args, Path(tmp)))
    path = write_result("workers_ab", result)
    for k, v in result["summary"].items():
        print(f"{k}: {v}")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
