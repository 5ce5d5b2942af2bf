"""What the gateway costs: GetProduct direct and through each edge path, and a same-run A/B
of two generated gateway configs.

    direct              grpclib client -> upstream (h2c)
    envoy_grpc          grpclib client -> Envoy edge -> upstream
    nginx_grpcweb       aiohttp -> NGINX -> Envoy (gRPC-Web filter) -> upstream
    nginx_rest          aiohttp -> NGINX -> Envoy (JSON transcoding) -> upstream
    nginx_connect       aiohttp -> NGINX -> Envoy (Connect bridge, application/proto)
    nginx_connect_json  aiohttp -> NGINX -> Envoy (bridge, Lua unframe, Connect transcoder)

Each side is one generated mesh/out (`--side NAME=SOURCE`, SOURCE `git:REV` or a directory;
`--base REV` = base=git:REV beside new=mesh/out) run as a private Envoy (--concurrency 1)
and NGINX (1 worker) on spare ports, every file as generated except ports, upstream and the
rate-limit numbers (bench/mesh_sides.py). Upstreams: 'memory' (a bare grpclib server
answering with the real service's reply bytes: the proxies' cost is visible) and
'product_service' (the real service with its catalog cache, on PostgreSQL). The upstream
is pinned to core 1; Envoy, NGINX and this client share core 0. Rounds are interleaved:
per path, direct then every side (order rotated each round), each point a warm-up and a
closed loop of `--seconds`. Per point: calls/s, p50/p99, and the CPU per call of Envoy,
NGINX (master + worker), the upstream and the client, from /proc (schedstat, every
thread) over exactly the measured window. Ratios (vs direct, new vs base) are taken within
a round; medians (min-max) over rounds are reported. Any error fails the run.

`--change NAME` keeps the A/B as an entry of bench/results/mesh_overhead.json's `changes`;
every run replaces `latest`.

    python -m bench.mesh_overhead [--base REV | --side NAME=SOURCE ...] [--change NAME]
        [--rounds 4] [--seconds 2] [--concurrency 16] [--upstreams memory,product_service]

Needs the stack's PostgreSQL (python -m stack up --only postgres-replica).

Calls and points: bench/mesh_overhead_points.py; summaries, table and README section:
bench/mesh_overhead_report.py.
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

from grpclib.client import Channel

from bench.common import (
    RESULTS,
    BenchFailed,
    machine,
    pin_preexec,
    pin_self,
    start_product_service,
    wait_grpc_serving,
)
from bench.mesh_overhead_points import (
    PATHS,
    PRODUCT_ID,
    PROXY_CPU,
    SERVICE_CPU,
    BenchError,
    run_upstream,
)
from bench.mesh_overhead_report import NAME, summarize, table
from bench.mesh_sides import describe
from mesh import nginx
from mesh.testing import free_port
from shop.product.v1 import product_grpc
from shop.product.v1 import product_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
NGINX_BIN = "/usr/sbin/nginx"


def memory_product(reply: bytes) -> Any:
    """GetProduct from memory (the real service's reply bytes): with the database out of
    the way, what the proxies cost is visible instead of drowned in the service's time. A
    stub built from the service descriptor (mesh/stubs.py); other methods UNIMPLEMENTED."""
    from mesh.stubs import Stub

    service = pb.DESCRIPTOR.services_by_name["ProductService"]
    return Stub(service, {"GetProduct": pb.GetProductResponse.FromString(reply)})


async def serve_memory(port: int, reply_file: Path) -> None:
    from grpclib.health.service import Health
    from grpclib.server import Server
    from grpclib.utils import graceful_exit

    server = Server([memory_product(reply_file.read_bytes()), Health()])  # noqa: ASYNC240
    with graceful_exit([server]):
        await server.start("127.0.0.1", port)
        await server.wait_closed()


def start_nginx(workdir: Path, listen: int, edge: int) -> subprocess.Popen[bytes]:
    """A private NGINX rendered by mesh/ in front of `edge` (bench/frontend_transport.py)."""
    opt = nginx.NginxOptions(
        listen=f"127.0.0.1:{listen}",
        envoy=f"127.0.0.1:{edge}",
        rate_per_ip=1_000_000,
        burst=1_000_000,
        status_listen=f"127.0.0.1:{free_port()}",
    )
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    (workdir / "html").mkdir(exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(nginx.render(opt))
    globals_ = f"daemon off; pid {workdir / 'nginx.pid'};"
    return subprocess.Popen(
        [NGINX_BIN, "-p", f"{workdir}/", "-c", str(conf), "-g", globals_],
        preexec_fn=pin_preexec(0),
        stderr=subprocess.DEVNULL,
    )


# ------------------------------------------------------------------ the run


def parse_sides(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """[(name, source, envoy concurrency)]: `NAME=SOURCE` or `NAME=SOURCE@CONCURRENCY`."""
    specs = list(args.side or [])
    if args.base:
        specs = [f"base=git:{args.base}", "new=mesh/out", *specs]
    if not specs:
        specs = ["new=mesh/out"]
    sides = []
    for spec in specs:
        name, _, source = spec.partition("=")
        source, _, conc = source.partition("@")
        if not name or not source:
            raise SystemExit(f"--side {spec!r}: expected NAME=SOURCE[@CONCURRENCY]")
        sides.append((name, source, int(conc or 1)))
    if len({s[0] for s in sides}) != len(sides):
        raise SystemExit("side names must differ")
    return sides


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sides = parse_sides(args)
    procs: list[subprocess.Popen[bytes]] = []
    rounds: list[dict[str, Any]] = []
    try:
        service, svc = start_product_service(SERVICE_CPU)
        procs.append(service)
        await wait_grpc_serving(svc)
        channel = Channel("127.0.0.1", svc)
        reply = await product_grpc.ProductServiceStub(channel).GetProduct(
            pb.GetProductRequest(id=PRODUCT_ID)
        )
        channel.close()
        reply_file = work / "reply.bin"
        reply_file.write_bytes(reply.SerializeToString())
        upstreams = {"product_service": (svc, service.pid)}
        if "memory" in args.upstreams:
            mem = free_port()
            memory = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "bench.mesh_overhead", "--serve-memory", str(mem),
                 str(reply_file)],
                cwd=ROOT, preexec_fn=pin_preexec(SERVICE_CPU),
            )  # fmt: skip
            procs.append(memory)
            await wait_grpc_serving(mem)
            upstreams["memory"] = (mem, memory.pid)
        if not args.no_pin:
            pin_self(PROXY_CPU)
        for upstream in args.upstreams:
            port, pid = upstreams[upstream]
            rounds += await run_upstream(upstream, port, pid, sides, work, args)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    names = [s[0] for s in sides]
    described = {n: describe(src) for n, src, _ in sides}
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "sides": {n: {"source": described[n], "envoy_concurrency": c} for n, _, c in sides},
        "settings": {
            "rounds": args.rounds,
            "seconds_per_point": args.seconds,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "upstreams": args.upstreams,
            "paths": args.paths,
            "pinned": not args.no_pin,
        },
        "summary": summarize(rounds, names),
        "rounds": rounds,
    }


SETUP = (
    "Each side: a generated mesh/out as a private Envoy (--concurrency 1) + NGINX (1 worker), "
    "files as generated except ports, upstream and rate-limit numbers (bench/mesh_sides.py). "
    "Upstream pinned to core 1; Envoy, NGINX and the client on core 0. 'memory': a bare "
    "grpclib server answering with the real reply bytes; 'product_service': the real service "
    "(catalog cache, PostgreSQL). gRPC paths use a grpclib client, HTTP paths aiohttp (its "
    "client CPU is in the table). CPU per call from /proc schedstat over the measured window."
)


def save(run: dict[str, Any], change: str | None, note: str) -> Path:
    path = RESULTS / f"{NAME}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    if "latest" not in data:  # the single-run layout before the A/B: start afresh
        data = {}
    data.update({"benchmark": NAME, "what": __doc__.split("\n\n")[0], "setup": SETUP})
    data["latest"] = run
    if change:
        data.setdefault("changes", {})[change] = {**run, "note": note}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mesh_overhead", description=__doc__)
    parser.add_argument("--base", help="git revision: sides base=git:REV and new=mesh/out")
    parser.add_argument("--side", action="append", help="NAME=SOURCE[@ENVOY_CONCURRENCY]")
    parser.add_argument("--change", help="keep this A/B under changes[NAME] in the results")
    parser.add_argument("--note", default="", help="what the change is (kept with it)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--upstreams", default="memory,product_service")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--no-pin", action="store_true", help="leave every process unpinned")
    parser.add_argument("--no-save", action="store_true", help="print only (an exploration)")
    parser.add_argument(
        "--serve-memory", nargs=2, metavar=("PORT", "REPLY"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve_memory:
        asyncio.run(serve_memory(int(args.serve_memory[0]), Path(args.serve_memory[1])))
        return 0
    args.upstreams = [u for u in args.upstreams.split(",") if u]
    args.paths = [p for p in args.paths.split(",") if p]
    if unknown := set(args.paths) - set(PATHS):
        parser.error(f"unknown paths {sorted(unknown)}; known: {', '.join(PATHS)}")
    if unknown := set(args.upstreams) - {"memory", "product_service"}:
        parser.error(f"unknown upstreams {sorted(unknown)}")
    try:
        with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
            run = asyncio.run(bench(args, Path(tmp)))
    except (BenchError, BenchFailed) as exc:
        print(f"mesh_overhead: FAILED: {exc}", file=sys.stderr)
        return 1
    print(table(run))
    if not args.no_save:
        print(f"wrote {save(run, args.change, args.note)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
