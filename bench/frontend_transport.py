"""Should the storefront move from gRPC-Web to the Connect protocol? Both ways, side by side.

1. Bundle size: `vite build` of the real app three times, differing only in the transport
   src/api/transport.ts creates (bench/frontend_transport.vite.config.ts swaps it):
   gRPC-Web (today), Connect binary, Connect JSON. Raw and gzip -9 bytes of the JS + CSS.
2. Latency and cost: the app's client library (Connect-ES in Node, bench/frontend_transport.mjs)
   calling GetProduct and ListProducts(20) through a private NGINX -> Envoy (configs from
   mesh/ as committed, rate limits off) to an in-memory ProductService (the proxies' cost
   visible, not the database's). The arms (transports, edges) take turns in slices of
   --slice-calls calls at --concurrency inside one client process, so each meets the same
   noise of a shared machine; Envoy's and NGINX's CPU per call are read from /proc around
   each slice. A round is --seconds of turns per method; ratios are within a round.
3. What the Connect filters cost the traffic that does not use them: gRPC-Web through this
   edge vs the same edge without the Connect marker, bridge and unframe filters.

Loopback only, bounded (--rounds x points x (--seconds + 0.5 s warm-up)); any error fails
the run. Writes bench/results/frontend_transport.json.

    python -m bench.frontend_transport [--rounds 3] [--seconds 2] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from google.protobuf import timestamp_pb2

from bench.common import (
    median_range,
    pin_preexec,
    pinned,
    wait_grpc_serving,
    write_result,
)
from bench.mesh_overhead import start_nginx
from mesh import envoy
from mesh.api import load
from mesh.generate import DESCRIPTOR, OUT
from mesh.testing import PrivateEnvoy, free_port
from shop.common.v1 import common_pb2
from shop.product.v1 import product_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = ROOT / "frontend"
CLIENT = ROOT / "bench" / "frontend_transport.mjs"
VITE_CONFIG = ROOT / "bench" / "frontend_transport.vite.config.ts"
TRANSPORTS = ("grpc-web", "connect-proto", "connect-json")
METHODS = ("GetProduct", "ListProducts")
CONNECT_FILTERS = {
    "shop.connect_marker",
    "envoy.filters.http.connect_grpc_bridge",
    "shop.connect_unframe",
}


class BenchError(RuntimeError):
    pass


# ------------------------------------------------------------------ bundle size


def bundle_sizes(work: Path) -> list[dict[str, Any]]:
    sizes = []
    for kind in TRANSPORTS:
        out = work / f"dist-{kind}"
        done = subprocess.run(
            ["npx", "vite", "build", "--config", str(VITE_CONFIG), "--outDir", str(out)],
            cwd=FRONTEND,
            env={**os.environ, "BENCH_TRANSPORT": kind},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"vite build ({kind}) failed: {done.stderr[-2000:]}")
        assets = sorted((out / "assets").glob("*.[jc]s*"))
        raw = sum(p.stat().st_size for p in assets)
        gz = sum(len(gzip.compress(p.read_bytes(), 9)) for p in assets)
        js = [p for p in assets if p.suffix == ".js"]
        sizes.append(
            {
                "transport": kind,
                "files": [p.name for p in assets],
                "raw_bytes": raw,
                "gzip_bytes": gz,
                "js_gzip_bytes": sum(len(gzip.compress(p.read_bytes(), 9)) for p in js),
            }
        )
    base = sizes[0]
    for s in sizes:
        s["gzip_delta_bytes_vs_grpc_web"] = s["gzip_bytes"] - base["gzip_bytes"]
        s["gzip_ratio_vs_grpc_web"] = round(s["gzip_bytes"] / base["gzip_bytes"], 4)
    return sizes


# ------------------------------------------------------------------ the upstream


def catalog() -> list[pb.Product]:
    """20 products shaped like the demo catalog's."""
    now = timestamp_pb2.Timestamp(seconds=1_790_000_000, nanos=798_962_000)
    return [
        pb.Product(
            id=f"p-{i:04d}",
            sku=f"SM-KIT-{i:04d}",
            name=f"Enamel Dutch Oven {i} qt",
            description="Cast iron with a chip-resistant enamel finish.",
            category="kitchen",
            price=common_pb2.Money(currency_code="USD", units=89, nanos=990_000_000),
            image_urls=[f"https://images.shopmesh.local/products/p-{i:04d}.jpg"],
            stock=60 + i,
            create_time=now,
            update_time=now,
        )
        for i in range(1, 21)
    ]


def memory_catalog() -> Any:
    """GetProduct and ListProducts(20) from memory: a stub built from the service
    descriptor (mesh/stubs.py); other methods UNIMPLEMENTED."""
    from mesh.stubs import Stub

    products = catalog()
    return Stub(
        pb.DESCRIPTOR.services_by_name["ProductService"],
        {
            "GetProduct": pb.GetProductResponse(product=products[0]),
            "ListProducts": pb.ListProductsResponse(products=products, next_page_token="20"),
        },
    )


async def serve_catalog(port: int) -> None:
    from grpclib.health.service import Health
    from grpclib.server import Server
    from grpclib.utils import graceful_exit

    server = Server([memory_catalog(), Health()])
    with graceful_exit([server]):
        await server.start("127.0.0.1", port)
        await server.wait_closed()


# ------------------------------------------------------------------ the edge


def edge_config(upstream: int, ports: tuple[int, int, int], connect: bool) -> dict:
    edge, internal, admin = ports
    opt = envoy.EnvoyOptions(
        edge_port=edge,
        internal_port=internal,
        admin_port=admin,
        descriptor_path=str(OUT / "envoy" / "descriptor.binpb"),
        openapi_path=str(OUT / "openapi" / "openapi.json"),
        docs_path=str(OUT / "openapi" / "docs.html"),
        endpoints={"product": [("127.0.0.1", upstream)]},
        rate_limit_rps=0,
        access_log=False,
    )
    cfg = envoy.build(load(DESCRIPTOR), opt)
    if not connect:  # the edge as it was before Connect: same routes, no Connect filters
        cfg = copy.deepcopy(cfg)
        (lst,) = [x for x in cfg["static_resources"]["listeners"] if x["name"] == "edge"]
        hcm = lst["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] not in CONNECT_FILTERS]
    return cfg


def _nginx_pids(master: int) -> list[int]:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        children = []
    return [master, *map(int, children)]


ARMS = (
    ("edge", "grpc-web"),
    ("edge", "connect-proto"),
    ("edge", "connect-json"),
    ("edge_without_connect", "grpc-web"),
)
BASELINE = "edge/grpc-web"


def one_round(arms: list[dict[str, Any]], method: str, args: argparse.Namespace) -> dict:
    plan = {
        "arms": arms,
        "method": method,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "sliceCalls": args.slice_calls,
    }
    done = subprocess.run(
        pinned(["node", str(CLIENT), json.dumps(plan)], 0),
        capture_output=True,
        text=True,
        timeout=args.seconds * 3 + 120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"{method}: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for arm in result["arms"]:
        if arm["errors"]:
            raise BenchError(
                f"{arm['name']} {method}: {arm['errors']} errors: {arm['first_error']}"
            )
    return result


def latency(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    upstream = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    edges: list[PrivateEnvoy] = []
    rounds: list[dict[str, Any]] = []
    try:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.frontend_transport", "--serve", str(upstream)],
                cwd=ROOT,
                preexec_fn=pin_preexec(1),
            )
        )
        asyncio.run(wait_grpc_serving(upstream))
        gateways: dict[str, tuple[str, dict[str, list[int]]]] = {}
        for name, connect in (("edge", True), ("edge_without_connect", False)):
            ports = (free_port(), free_port(), free_port())
            proxy = PrivateEnvoy(edge_config(upstream, ports, connect), work / name, ports[2])
            proxy.__enter__()
            edges.append(proxy)
            if pin_preexec(0):
                os.sched_setaffinity(proxy.proc.pid, {0})  # type: ignore[union-attr]
            listen = free_port()
            nginx = start_nginx(work / f"nginx-{name}", listen, ports[0])
            procs.append(nginx)
            time.sleep(0.5)  # NGINX forks its worker
            pids = {"envoy": [proxy.proc.pid], "nginx": _nginx_pids(nginx.pid)}  # type: ignore[union-attr]
            gateways[name] = (f"http://127.0.0.1:{listen}/api", pids)
        arms = [
            {
                "name": f"{gw}/{kind}",
                "baseUrl": gateways[gw][0],
                "transport": kind,
                "pids": gateways[gw][1],
            }
            for gw, kind in ARMS
        ]
        for rnd in range(args.rounds):
            for method in METHODS:
                result = one_round(arms, method, args)
                result["round"] = rnd
                print(json.dumps(result), flush=True)
                rounds.append(result)
    finally:
        for proxy in edges:
            proxy.__exit__()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return rounds


FIGURES = (
    "calls_per_s",
    "p50_ms",
    "p99_ms",
    "envoy_cpu_us_per_call",
    "nginx_cpu_us_per_call",
    "client_cpu_us_per_call",
)


def ratios(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method and arm: the figures (median (min-max) over rounds), and each round's
    figure over the same round's gRPC-Web one through this edge."""
    out = []
    for method in METHODS:
        mine = [r for r in rounds if r["method"] == method]
        for gw, kind in ARMS:
            name = f"{gw}/{kind}"
            arm = [next(a for a in r["arms"] if a["name"] == name) for r in mine]
            base = [next(a for a in r["arms"] if a["name"] == BASELINE) for r in mine]
            out.append(
                {
                    "method": method,
                    "arm": name,
                    **{f: median_range(a[f] for a in arm) for f in FIGURES},
                    "vs_grpc_web": {
                        f: median_range(a[f] / b[f] for a, b in zip(arm, base, strict=True) if b[f])
                        for f in FIGURES
                    },
                }
            )
    return out


def figures(sizes: list[dict[str, Any]], summary: list[dict[str, Any]]) -> dict[str, str]:
    """The headline figures, readable in bench/README.md."""
    out = {
        f"bundle gzip, {s['transport']}": f"{s['gzip_bytes'] / 1000:.1f} kB "
        f"({s['gzip_delta_bytes_vs_grpc_web']:+d} B vs gRPC-Web)"
        for s in sizes
    }

    def r(v: dict[str, float]) -> str:
        return f"x{v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f})"

    for s in summary:
        if s["arm"] == BASELINE:
            out[f"{s['method']} {s['arm']}"] = (
                f"{s['calls_per_s']['median']} calls/s, p50 {s['p50_ms']['median']} ms, "
                f"Envoy {s['envoy_cpu_us_per_call']['median']} us CPU/call"
            )
            continue
        v = s["vs_grpc_web"]
        out[f"{s['method']} {s['arm']} vs gRPC-Web"] = (
            f"calls/s {r(v['calls_per_s'])}, p50 {r(v['p50_ms'])}, "
            f"Envoy CPU/call {r(v['envoy_cpu_us_per_call'])}, "
            f"client CPU/call {r(v['client_cpu_us_per_call'])}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.frontend_transport", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--slice-calls", type=int, default=40, help="calls per arm per turn")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve_catalog(args.serve))
        return 0
    work = Path(tempfile.mkdtemp(prefix="frontend-transport-"))
    try:
        sizes = bundle_sizes(work)
        for s in sizes:
            print(json.dumps(s), flush=True)
        rounds = latency(work, args)
    except BenchError as exc:
        print(f"frontend_transport: FAILED: {exc}", file=sys.stderr)
        return 1
    summary = ratios(rounds)
    path = write_result(
        "frontend_transport",
        {
            "what": "Should the storefront's transport move from gRPC-Web to Connect? Bundle "
            "size of the real app built three ways, and latency/CPU of the app's client "
            "library through NGINX -> Envoy with the arms interleaved (ratios within a round "
            "against gRPC-Web through the same edge, median (min-max) over rounds).",
            "figures": figures(sizes, summary),
            "rounds": args.rounds,
            "seconds_per_round_per_method": args.seconds,
            "concurrency": args.concurrency,
            "slice_calls": args.slice_calls,
            "setup": "Connect-ES 2 in Node 20 (the app's client library, fetch over HTTP/1.1 "
            "keep-alive) -> private NGINX -> private Envoy (mesh/ configs, rate limits off; "
            "'edge_without_connect' drops the Connect marker, bridge and unframe filters) -> "
            "in-memory ProductService (20 demo-shaped products) pinned to core 1; Envoy, "
            "NGINX and the client on core 0.",
            "load_average_at_end": os.getloadavg(),
            "points": {"bundle": sizes, "summary": summary, "rounds": rounds},
        },
    )
    for s in summary:
        r = s["vs_grpc_web"]
        print(
            f"{s['method']:<13} {s['arm']:<30} {s['calls_per_s']['median']:>7.1f} calls/s "
            f"x{r['calls_per_s']['median']:.3f}  p50 {s['p50_ms']['median']:.2f} ms "
            f"x{r['p50_ms']['median']:.3f}  envoy {s['envoy_cpu_us_per_call']['median']:.0f} us "
            f"x{r['envoy_cpu_us_per_call']['median']:.3f}"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
