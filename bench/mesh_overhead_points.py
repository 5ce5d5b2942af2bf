"""One call per path (Envoy gRPC; through NGINX: gRPC-Web, REST, Connect binary and JSON)
and one measured point of bench/mesh_overhead.py: a bounded closed loop with the CPU of
each part and each core read around it, and the in-memory upstream they run against.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from grpclib.client import Channel

from bench.common import closed_loop, core_ticks
from bench.mesh_sides import Gateway, cpu_ns, start_gateway, tree
from mesh.testing import GRPC_WEB_HEADERS, grpc_web_parse, grpc_web_request
from shop.product.v1 import product_grpc
from shop.product.v1 import product_pb2 as pb

PRODUCT_ID = "p-0001"
PATHS = ("envoy_grpc", "nginx_grpcweb", "nginx_rest", "nginx_connect", "nginx_connect_json")
SERVICE_CPU, PROXY_CPU = 1, 0
CONNECT_PROTO = {"content-type": "application/proto", "connect-protocol-version": "1"}
CONNECT_JSON = {"content-type": "application/json", "connect-protocol-version": "1"}


class BenchError(RuntimeError):
    pass


# ------------------------------------------------------------------ one call per path

Call = Callable[[], Awaitable[None]]


def grpc_call(port: int) -> tuple[Call, Callable[[], None]]:
    channel = Channel("127.0.0.1", port)
    stub = product_grpc.ProductServiceStub(channel)
    req = pb.GetProductRequest(id=PRODUCT_ID)

    async def call() -> None:
        _check((await stub.GetProduct(req, timeout=5)).product.id)

    return call, channel.close


def _check(got: str) -> None:
    if got != PRODUCT_ID:
        raise BenchError(f"got product {got!r}, want {PRODUCT_ID}")


def http_calls(session: aiohttp.ClientSession, base: str) -> dict[str, Call]:
    req = pb.GetProductRequest(id=PRODUCT_ID).SerializeToString()
    web_body = grpc_web_request(req)
    rpc_url = f"{base}/api/shop.product.v1.ProductService/GetProduct"
    rest_url = f"{base}/api/v1/products/{PRODUCT_ID}"
    json_body = json.dumps({"id": PRODUCT_ID}).encode()

    async def grpc_web() -> None:
        async with session.post(rpc_url, data=web_body, headers=GRPC_WEB_HEADERS) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise BenchError(f"gRPC-Web HTTP {resp.status}")
            messages, trailers = grpc_web_parse(data, dict(resp.headers))
            if trailers.get("grpc-status") != "0":
                raise BenchError(f"gRPC-Web status {trailers}")
            _check(pb.GetProductResponse.FromString(messages[0]).product.id)

    async def rest() -> None:
        async with session.get(rest_url) as resp:
            if resp.status != 200:
                raise BenchError(f"REST HTTP {resp.status}: {await resp.text()}")
            _check((await resp.json())["product"]["id"])

    async def connect() -> None:
        async with session.post(rpc_url, data=req, headers=CONNECT_PROTO) as resp:
            data = await resp.read()
            if resp.status != 200 or resp.content_type != "application/proto":
                raise BenchError(f"Connect HTTP {resp.status} {resp.content_type}: {data[:200]!r}")
            _check(pb.GetProductResponse.FromString(data).product.id)

    async def connect_json() -> None:
        async with session.post(rpc_url, data=json_body, headers=CONNECT_JSON) as resp:
            if resp.status != 200:
                raise BenchError(f"Connect JSON HTTP {resp.status}: {await resp.text()}")
            _check((await resp.json())["product"]["id"])

    return {
        "nginx_grpcweb": grpc_web,
        "nginx_rest": rest,
        "nginx_connect": connect,
        "nginx_connect_json": connect_json,
    }


# ------------------------------------------------------------------ one measured point

Probe = Callable[[], dict[str, int]]


async def point(call: Call, probe: Probe, args: argparse.Namespace, what: str) -> dict[str, Any]:
    """Warm up, then a closed loop whose CPU window is exactly the measured calls."""
    await closed_loop(lambda _w, _i: call(), args.concurrency, args.warmup, warmup=0, what=what)
    before, client0, cores0 = probe(), time.process_time_ns(), core_ticks()
    res = await closed_loop(
        lambda _w, _i: call(), args.concurrency, args.seconds, warmup=0, what=what
    )
    after, client1, cores1 = probe(), time.process_time_ns(), core_ticks()
    out: dict[str, Any] = {
        "calls": res.calls,
        "calls_per_s": res.per_s,
        "p50_ms": res.p50_ms,
        "p99_ms": res.p99_ms,
        "client_us": round((client1 - client0) / 1000 / res.calls, 1),
    }
    for part in before:
        out[f"{part}_us"] = round((after[part] - before[part]) / 1000 / res.calls, 1)
    if "envoy_us" in out:
        out["gateway_us"] = round(out["envoy_us"] + out.get("nginx_us", 0.0), 1)
    for core, (busy, total) in cores1.items():  # how busy each core was (all processes)
        b0, t0 = cores0.get(core, (busy, total))
        out[f"core{core}_busy"] = round((busy - b0) / max(1, total - t0), 2)
    return out


def _probe(parts: dict[str, Callable[[], int]]) -> Probe:
    return lambda: {k: f() for k, f in parts.items()}


async def run_upstream(
    upstream: str,
    port: int,
    upstream_pid: int,
    sides: list[tuple[str, str, int]],
    work: Path,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """Every side in front of the upstream on `port`; interleaved rounds over the paths."""
    gateways: list[Gateway] = []
    closers: list[Callable[[], None]] = []
    rounds: list[dict[str, Any]] = []
    cpu = None if args.no_pin else PROXY_CPU
    upstream_cpu = lambda: sum(cpu_ns(p) for p in tree(upstream_pid))  # noqa: E731
    try:
        for name, source, conc in sides:
            gateways.append(
                start_gateway(name, source, work / upstream, [("127.0.0.1", port)], cpu, conc)
            )
        direct, close = grpc_call(port)
        closers.append(close)
        calls: dict[str, dict[str, Call]] = {}
        async with Sessions(len(gateways), args.concurrency) as sessions:
            for gw, session in zip(gateways, sessions, strict=True):
                via_envoy, close = grpc_call(gw.edge_port)
                closers.append(close)
                await _wait_nginx(session, gw)
                calls[gw.name] = {"envoy_grpc": via_envoy, **http_calls(session, gw.base_url)}
            direct_probe = _probe({"upstream": upstream_cpu})
            for r in range(args.rounds):
                for path in args.paths:
                    row: dict[str, Any] = {"round": r, "path": path, "upstream": upstream}
                    row["direct"] = await point(direct, direct_probe, args, f"{upstream} direct")
                    k = r % len(gateways)
                    for gw in gateways[k:] + gateways[:k]:  # rotated: drift hits every side
                        parts = {"envoy": lambda g=gw: g.cpu()["envoy"], "upstream": upstream_cpu}
                        if path.startswith("nginx"):
                            parts["nginx"] = lambda g=gw: g.cpu()["nginx"]
                        row[gw.name] = await point(
                            calls[gw.name][path], _probe(parts), args, f"{gw.name} {path}"
                        )
                    print(json.dumps(row), flush=True)
                    rounds.append(row)
    finally:
        for close in closers:
            close()
        for gw in gateways:
            gw.stop()
    return rounds


class Sessions:
    """N aiohttp sessions, one per side, each with its own connection pool of `limit`."""

    def __init__(self, n: int, limit: int) -> None:
        self.n, self.limit = n, limit
        self.sessions: list[aiohttp.ClientSession] = []

    async def __aenter__(self) -> list[aiohttp.ClientSession]:
        for _ in range(self.n):
            conn = aiohttp.TCPConnector(limit=self.limit)
            self.sessions.append(aiohttp.ClientSession(connector=conn))
        return self.sessions

    async def __aexit__(self, *exc: object) -> None:
        for s in self.sessions:
            await s.close()


async def _wait_nginx(session: aiohttp.ClientSession, gw: Gateway) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if gw.nginx.poll() is not None:
            raise BenchError(f"{gw.name}: nginx exited ({gw.nginx.returncode})")
        try:
            async with session.get(f"{gw.base_url}/api/openapi.json") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise BenchError(f"{gw.name}: nginx did not answer")
