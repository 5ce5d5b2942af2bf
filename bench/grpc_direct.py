"""GetProduct and a 20-product ListProducts straight to the product service (real
PostgreSQL primary + replica, no mesh), side by side with a baseline: a bare grpclib server
answering the same messages from memory. Both servers run as their own process pinned to
one core (the client on the other), calls/s and p50/p99 at concurrency 1/16/64, each point
bounded (--seconds, default 5). Loopback only. Writes bench/results/grpc_direct.json.

    python -m bench.grpc_direct [--seconds 5] [--concurrency 1,16,64]

Needs the stack's PostgreSQL (python -m stack up --only postgres-replica) and the demo
catalog (python -m services.product.demo), which it loads if missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from grpclib.client import Channel

from bench.common import (
    closed_loop,
    free_port,
    pin_preexec,
    pin_self,
    start_product_service,
    wait_grpc_serving,
    write_result,
)
from mesh.stubs import Stub
from shop.product.v1 import product_grpc
from shop.product.v1 import product_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
GET = pb.GetProductRequest(id="p-0001")
LIST = pb.ListProductsRequest(page_size=20)
MAX_CALLS = 100_000  # per point


# ------------------------------------------------------------------ the baseline server


def memory_products(get_reply: bytes, list_reply: bytes) -> Stub:
    """Same replies as the real service, from memory: the cost of grpclib + upb alone (a
    stub built from the service descriptor, mesh/stubs.py)."""
    return Stub(
        pb.DESCRIPTOR.services_by_name["ProductService"],
        {
            "GetProduct": pb.GetProductResponse.FromString(get_reply),
            "ListProducts": pb.ListProductsResponse.FromString(list_reply),
        },
    )


async def serve_baseline(port: int, replies: Path) -> None:
    from grpclib.health.service import Health
    from grpclib.server import Server
    from grpclib.utils import graceful_exit

    data = json.loads(replies.read_text())  # noqa: ASYNC240 - before serving
    server = Server(
        [memory_products(bytes.fromhex(data["get"]), bytes.fromhex(data["list"])), Health()]
    )
    with graceful_exit([server]):
        await server.start("127.0.0.1", port)
        await server.wait_closed()


# ------------------------------------------------------------------ client side


async def run_point(port: int, rpc: str, concurrency: int, seconds: float) -> dict[str, Any]:
    channel = Channel("127.0.0.1", port)
    stub = product_grpc.ProductServiceStub(channel)
    call = stub.GetProduct if rpc == "GetProduct" else stub.ListProducts
    request = GET if rpc == "GetProduct" else LIST
    try:
        # bench.common's loop: bounded, and any error fails the benchmark loudly
        res = await closed_loop(
            lambda w, i: call(request), concurrency, seconds, MAX_CALLS,
            warmup=min(1.0, seconds / 5), what=f"grpc_direct {rpc} C={concurrency}",
        )  # fmt: skip
    finally:
        channel.close()
    return {
        "rpc": rpc,
        "concurrency": concurrency,
        "calls": res.calls,
        "errors": res.errors,
        "calls_per_s": res.per_s,
        "p50_ms": res.p50_ms,
        "p99_ms": res.p99_ms,
        "mean_ms": res.mean_ms,
    }


async def fetch_replies(port: int) -> dict[str, str]:
    channel = Channel("127.0.0.1", port)
    stub = product_grpc.ProductServiceStub(channel)
    get = await stub.GetProduct(GET)
    listed = await stub.ListProducts(LIST)
    channel.close()
    assert len(listed.products) == 20, "demo catalog missing: python -m services.product.demo"
    return {"get": get.SerializeToString().hex(), "list": listed.SerializeToString().hex()}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    # Setup and teardown block the loop on purpose: nothing is measured while they run.
    procs: list[subprocess.Popen[bytes]] = []
    replies = ROOT / "bench" / "results" / ".grpc_direct_replies.json"
    base_port = free_port()
    try:
        service, svc_port = start_product_service(1, args.log_level)
        procs.append(service)
        await wait_grpc_serving(svc_port)
        replies.write_text(json.dumps(await fetch_replies(svc_port)))
        procs.append(
            subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "bench.grpc_direct", "--serve-baseline", str(base_port)],
                cwd=ROOT,
                preexec_fn=pin_preexec(1),
            )
        )
        await wait_grpc_serving(base_port)
        pin_self(0)
        points = []
        for rpc in ("GetProduct", "ListProducts"):
            for c in args.concurrency:
                for target, port in (("service", svc_port), ("baseline", base_port)):
                    point = {"target": target, **await run_point(port, rpc, c, args.seconds)}
                    print(json.dumps(point), flush=True)
                    points.append(point)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=15)
        replies.unlink(missing_ok=True)
    ratios: dict[str, dict[str, float]] = {}
    for rpc in ("GetProduct", "ListProducts"):
        for c in args.concurrency:
            svc = next(
                p
                for p in points
                if (p["rpc"], p["concurrency"], p["target"]) == (rpc, c, "service")
            )
            base = next(
                p
                for p in points
                if (p["rpc"], p["concurrency"], p["target"]) == (rpc, c, "baseline")
            )
            ratios.setdefault(rpc, {})[str(c)] = (
                round(svc["calls_per_s"] / base["calls_per_s"], 3) if base["calls_per_s"] else 0.0
            )
    return {
        "what": "product service (grpclib + runtime + PostgreSQL replica reads) vs a bare "
        "grpclib server answering the same messages from memory; ratio = service/baseline "
        "calls/s",
        "seconds_per_point": args.seconds,
        "service_log_level": args.log_level,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "points": points,
        "ratios": ratios,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per point")
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument(
        "--log-level", default="INFO", help="service log level (INFO = a line per call)"
    )
    ap.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_baseline:
        replies = ROOT / "bench" / "results" / ".grpc_direct_replies.json"
        asyncio.run(serve_baseline(args.serve_baseline, replies))
        return
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    try:
        import uvloop

        result = uvloop.run(bench(args))
    except ImportError:
        result = asyncio.run(bench(args))
    write_result("grpc_direct", result)
    print(json.dumps(result["ratios"], indent=2))


if __name__ == "__main__":
    main()
