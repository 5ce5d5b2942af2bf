"""Where the gateway's CPU per shop request goes: Envoy's and NGINX's CPU per call of the
shop's reads, by call and protocol, through one private gateway (the generated mesh/out,
bench/mesh_sides.py) in front of the stack's own product service.

Calls: GetProduct and ListProducts(page_size 20) (what browse, home and the listing views
send), each as REST (JSON transcoding: what bench/shop_load.py sends) and as gRPC-Web (what
the storefront sends). Rounds interleave the four points (order rotated); each point is a
closed loop of `--concurrency` clients for `--seconds`, the CPU of Envoy (every thread)
and NGINX (master + worker) read from schedstat over exactly that window. The REST/gRPC-Web
ratio of one call is taken within a round; medians (min-max) over rounds are reported.

    python -m bench.mesh_call_cost [--source mesh/out] [--rounds 4] [--seconds 3]
        [--concurrency 4] [--envoy-concurrency 2] [--save]

Needs the stack's product service (`make up`). `--save` writes
bench/results/mesh_call_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    BenchFailed,
    closed_loop,
    git_head,
    median_range,
    run_main,
    write_result,
)
from bench.mesh_sides import Gateway, describe, start_gateway
from mesh.services import SERVICES
from mesh.testing import GRPC_WEB_HEADERS, grpc_web_parse, grpc_web_request
from shop.product.v1 import product_pb2 as pb

PRODUCT_ID = "p-0001"
PAGE = 20
RPC = "/api/shop.product.v1.ProductService/"

Call = Callable[[int, int], Awaitable[None]]


def calls(session: aiohttp.ClientSession, base: str) -> dict[str, Call]:
    async def grpc_web(method: str, req: bytes, check: Callable[[bytes], bool]) -> None:
        body = grpc_web_request(req)
        async with session.post(base + RPC + method, data=body, headers=GRPC_WEB_HEADERS) as r:
            data = await r.read()
            msgs, trailers = grpc_web_parse(data, dict(r.headers))
            if r.status != 200 or trailers.get("grpc-status") != "0" or not check(msgs[0]):
                raise BenchFailed(f"gRPC-Web {method}: HTTP {r.status} {trailers}")

    async def rest(path: str, check: Callable[[dict], bool]) -> None:
        async with session.get(base + path) as r:
            if r.status != 200:
                raise BenchFailed(f"REST {path}: HTTP {r.status} {await r.text()}")
            if not check(await r.json()):
                raise BenchFailed(f"REST {path}: unexpected body")

    get_req = pb.GetProductRequest(id=PRODUCT_ID).SerializeToString()
    list_req = pb.ListProductsRequest(page_size=PAGE).SerializeToString()

    def one(m: bytes) -> bool:
        return pb.GetProductResponse.FromString(m).product.id == PRODUCT_ID

    def page(m: bytes) -> bool:
        return len(pb.ListProductsResponse.FromString(m).products) == PAGE

    return {
        "GetProduct/rest": lambda w, i: rest(
            f"/api/v1/products/{PRODUCT_ID}", lambda d: d["product"]["id"] == PRODUCT_ID
        ),
        "GetProduct/grpc-web": lambda w, i: grpc_web("GetProduct", get_req, one),
        "ListProducts20/rest": lambda w, i: rest(
            f"/api/v1/products?page_size={PAGE}", lambda d: len(d["products"]) == PAGE
        ),
        "ListProducts20/grpc-web": lambda w, i: grpc_web("ListProducts", list_req, page),
    }


async def until_served(session: aiohttp.ClientSession, gw: Gateway, limit_s: float = 30) -> None:
    """Until NGINX listens and Envoy finds the product service healthy."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            async with session.get(f"{gw.base_url}/api/v1/products/{PRODUCT_ID}") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise BenchFailed(f"gateway {gw.base_url} not serving GetProduct in {limit_s:g} s")
        await asyncio.sleep(0.2)


async def point(gw: Gateway, call: Call, args: argparse.Namespace) -> dict[str, Any]:
    await closed_loop(call, args.concurrency, 0.5, warmup=0.0, what="warm-up")
    before = gw.cpu()
    res = await closed_loop(call, args.concurrency, args.seconds, warmup=0.0)
    after = gw.cpu()
    if res.errors:
        raise BenchFailed(f"{res.errors} errors: {res.first_error}")
    n = res.calls
    envoy = (after["envoy"] - before["envoy"]) / 1000 / n
    nginx = (after["nginx"] - before["nginx"]) / 1000 / n
    return {
        "calls_per_s": res.per_s,
        "p50_ms": res.p50_ms,
        "envoy_us": round(envoy, 1),
        "nginx_us": round(nginx, 1),
        "gateway_us": round(envoy + nginx, 1),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    upstream = [("127.0.0.1", SERVICES["product"])]
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mesh_call_cost-") as tmp:
        gw = start_gateway(
            "side", args.source, Path(tmp), upstream, cpu=None,
            envoy_concurrency=args.envoy_concurrency,
        )  # fmt: skip
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=args.concurrency)
            ) as session:
                await until_served(session, gw)
                named = calls(session, gw.base_url)
                names = list(named)
                for r in range(args.rounds):
                    order = names[r % len(names) :] + names[: r % len(names)]
                    pts = {}
                    for name in order:
                        pts[name] = await point(gw, named[name], args)
                    print(json.dumps({"round": r, **pts}), flush=True)
                    rounds.append(pts)
        finally:
            gw.stop()
    summary: dict[str, Any] = {}
    for name in rounds[0]:
        summary[name] = {
            k: median_range((p[name][k] for p in rounds), 1)
            for k in ("calls_per_s", "envoy_us", "nginx_us", "gateway_us")
        }
    for call in ("GetProduct", "ListProducts20"):
        summary[f"{call} rest/grpc-web"] = {
            k: median_range((p[f"{call}/rest"][k] / p[f"{call}/grpc-web"][k] for p in rounds), 3)
            for k in ("envoy_us", "nginx_us", "gateway_us")
        }
    return {
        "what": "Envoy and NGINX CPU per call of the shop's reads through one private gateway "
        "in front of the stack's product service: REST (JSON transcoding) vs gRPC-Web",
        "source": describe(args.source),
        "envoy_concurrency": args.envoy_concurrency,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "commit": git_head(),
        "load_at_end": round(os.getloadavg()[0], 2),
        "summary": summary,
        "rounds": rounds,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="mesh/out")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--envoy-concurrency", type=int, default=2)
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args()
    result = run_main(bench(args))
    print(json.dumps(result["summary"], indent=1))
    if args.save:
        print(write_result("mesh_call_cost", result))


if __name__ == "__main__":
    main()
