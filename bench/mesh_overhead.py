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
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from grpclib.client import Channel

from bench.common import (
    RESULTS,
    BenchFailed,
    closed_loop,
    fmt_range,
    machine,
    median_range,
    pin_preexec,
    pin_self,
    start_product_service,
    wait_grpc_serving,
)
from bench.mesh_sides import Gateway, cpu_ns, describe, start_gateway, tree
from mesh import nginx
from mesh.testing import GRPC_WEB_HEADERS, free_port, grpc_web_parse, grpc_web_request
from shop.product.v1 import product_grpc
from shop.product.v1 import product_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
NAME = "mesh_overhead"
PRODUCT_ID = "p-0001"
NGINX_BIN = "/usr/sbin/nginx"
PATHS = ("envoy_grpc", "nginx_grpcweb", "nginx_rest", "nginx_connect", "nginx_connect_json")
SERVICE_CPU, PROXY_CPU = 1, 0
CONNECT_PROTO = {"content-type": "application/proto", "connect-protocol-version": "1"}
CONNECT_JSON = {"content-type": "application/json", "connect-protocol-version": "1"}
# Per point: what each side's figures are, and which are compared new vs base.
FIGURES = ("calls_per_s", "p50_ms", "p99_ms", "envoy_us", "nginx_us", "gateway_us",
           "upstream_us", "client_us", "core0_busy", "core1_busy")  # fmt: skip
AB_FIGURES = ("calls_per_s", "envoy_us", "nginx_us", "gateway_us", "upstream_us")


class BenchError(RuntimeError):
    pass


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


def core_ticks() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) jiffies from /proc/stat (busy = all but idle and iowait)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *vals = line.split()
        if name.startswith("cpu") and name != "cpu":
            v = [int(x) for x in vals]
            out[int(name[3:])] = (sum(v) - v[3] - v[4], sum(v))
    return out


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


# ------------------------------------------------------------------ summaries


def _ratio(a: float | None, b: float | None) -> float:
    return a / b if a and b else float("nan")


DIRECT_FIGURES = ("calls_per_s", "p50_ms", "upstream_us", "client_us", "core0_busy", "core1_busy")


def summarize(rounds: list[dict[str, Any]], side_names: list[str]) -> dict[str, Any]:
    """Per upstream and path: each side's figures and ratio vs direct, and (with two or more
    sides) every other side against the first, as medians (min-max) of per-round values."""
    out: dict[str, Any] = {}
    key = lambda r: (r["upstream"], r["path"])  # noqa: E731
    for (upstream, path), group in itertools.groupby(sorted(rounds, key=key), key=key):
        rows = list(group)
        cell: dict[str, Any] = {
            "rounds": len(rows),
            "direct": {f: median_range(r["direct"][f] for r in rows) for f in DIRECT_FIGURES},
        }
        for s in side_names:
            cell[s] = {f: median_range(r[s].get(f, float("nan")) for r in rows) for f in FIGURES}
            cell[s]["ratio_vs_direct"] = median_range(
                _ratio(r[s]["calls_per_s"], r["direct"]["calls_per_s"]) for r in rows
            )
        base = side_names[0]
        for s in side_names[1:]:
            cell[f"{s}_vs_{base}"] = {
                f: median_range(_ratio(r[s].get(f), r[base].get(f)) for r in rows)
                for f in AB_FIGURES
            }
        out.setdefault(upstream, {})[path] = cell
    return out


def _busy(c: dict[str, Any]) -> str:
    if "core0_busy" not in c:
        return ""
    return f"{c['core0_busy']['median']:.2f} / {c['core1_busy']['median']:.2f}"


def table(run: dict[str, Any]) -> str:
    """Markdown: per upstream, path and side the ratio vs direct and the CPU per call, and the
    A/B ratios when the run had two sides."""
    sides = list(run["sides"])
    lines = [
        "| upstream | path | side | calls/s | x of direct | Envoy µs/call | NGINX µs/call "
        "| upstream µs/call | client µs/call | core 0 / 1 busy |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ab = []
    for upstream, paths in run["summary"].items():
        for path, cell in paths.items():
            d = cell["direct"]
            lines.append(
                f"| {upstream} | {path} | direct | {fmt_range(d['calls_per_s'], 0)} | 1 | | | "
                f"{fmt_range(d['upstream_us'], 0)} | {fmt_range(d['client_us'], 0)} | "
                f"{_busy(d)} |"
            )
            for s in sides:
                c = cell[s]
                nginx_us = fmt_range(c["nginx_us"], 0) if c["nginx_us"]["n"] else ""
                lines.append(
                    f"| {upstream} | {path} | {s} | {fmt_range(c['calls_per_s'], 0)} | "
                    f"{fmt_range(c['ratio_vs_direct'])} | {fmt_range(c['envoy_us'], 0)} | "
                    f"{nginx_us} | {fmt_range(c['upstream_us'], 0)} | "
                    f"{fmt_range(c['client_us'], 0)} | {_busy(c)} |"
                )
            for s in sides[1:]:
                r = cell[f"{s}_vs_{sides[0]}"]
                ab.append(
                    f"| {upstream} | {path} | {s} | {fmt_range(r['calls_per_s'])} | "
                    f"{fmt_range(r['envoy_us'])} | "
                    f"{fmt_range(r['nginx_us']) if r['nginx_us']['n'] else ''} | "
                    f"{fmt_range(r['gateway_us'])} | {fmt_range(r['upstream_us'])} |"
                )
    if ab:
        lines += [
            "",
            f"Each side / {sides[0]} (per-round ratios; CPU below 1 = cheaper):",
            "",
            "| upstream | path | side | calls/s | Envoy CPU/call | NGINX CPU/call | "
            "Envoy+NGINX CPU/call | upstream CPU/call |",
            "|---|---|---|---:|---:|---:|---:|---:|",
            *ab,
        ]
    return "\n".join(lines)


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


def headline(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Summary rows for bench/README.md: the latest run's last side, real service behind."""
    run = r.get("latest") or {}
    sides = list(run.get("sides", {}))
    paths = run.get("summary", {}).get("product_service", {})
    if not sides:
        return []
    side = sides[-1]
    rows = []
    for path, cell in paths.items():
        c = cell[side]
        rows.append((
            f"GetProduct via {path} ({side}: {run['sides'][side]['source']})",
            f"x{fmt_range(c['ratio_vs_direct'])} of direct",
            f"Envoy {fmt_range(c['envoy_us'], 0)} + NGINX "
            f"{fmt_range(c['nginx_us'], 0) if c['nginx_us']['n'] else '-'} µs CPU/call",
        ))  # fmt: skip
    return rows


def report(r: dict[str, Any]) -> list[str]:
    """bench/README.md section: the latest run and every kept A/B."""
    out = [f"## {NAME}: the gateway's cost per GetProduct, and A/Bs of its generated config", ""]
    out += [r.get("what", ""), "", r.get("setup", ""), ""]
    runs = [("latest run", r["latest"])] if r.get("latest") else []
    runs += [(f"change `{k}`", v) for k, v in r.get("changes", {}).items()]
    for title, run in runs:
        sides = ", ".join(
            f"{n} = {s['source']} (Envoy --concurrency {s['envoy_concurrency']})"
            for n, s in run["sides"].items()
        )
        st = run["settings"]
        out += [
            f"**{title}** ({run['when']}; {sides}; {st['rounds']} rounds x "
            f"{st['seconds_per_point']} s, C={st['concurrency']}; "
            f"load at end {run['load_average_at_end'][0]})",
            "",
        ]
        if run.get("note"):
            out += [run["note"], ""]
        out += [table(run), ""]
    return out


if __name__ == "__main__":
    sys.exit(main())
