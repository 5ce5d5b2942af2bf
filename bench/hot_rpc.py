"""Hot RPCs: GetProduct and a 20-product ListProducts, our code path vs the alternatives.

Servers, each its own process pinned to core 0 (`taskset -c 0`), the client on core 1:
- runtime_mem: OUR path without the DB: the product handlers + services.runtime serve()
  (auth hook, validation, metrics, tracing, one JSON log line per call) over grpclib + upb,
  with an in-memory unit of work (same ports) holding the catalog's first 20 products;
- grpclib_upb: a bare grpclib server answering the same upb messages from memory;
- grpcio: grpc.aio server + upb (grpc_bench's python_async_grpc style), same data: THE
  reference every ratio is computed against;
- betterproto / betterproto2: grpclib + betterproto 2.0.0b7 / betterproto2 0.10.0 (the
  tracked alternatives of ARCHITECTURE 3a), installed in a separate venv
  (~/.cache/shopmesh/bench-venv), code generated into a temp dir (never gen/);
- service_db: the real product service (services.product.main: PostgreSQL primary + replica);
- service_db_old: the same service with the DB read path as it was before bench's fix
  (PRODUCT_DB_POOL_PRE_PING=true, PRODUCT_DB_READ_SNAPSHOT=always): the A/B of that change;
- service_db_nocache: the real service with its catalog cache off (PRODUCT_CACHE_ENABLED=
  false): every call reads the database, GetProduct/ListProducts as prepared statements on
  raw asyncpg connections; service_db_sqla: cache off and the same statements through
  SQLAlchemy Core (PRODUCT_DB_RAW_READS=false). With service_db (cache on) and
  service_db_base (--base: the code before), the same-run A/B of the catalog read path;
- runtime_mem_base / service_db_base (with --base REV): runtime_mem / service_db served by
  the code of git revision REV, checked out in a worktree under /tmp (the same-run A/B of a
  runtime change; the cell of runtime_mem / service_db then carries ratio_vs_<name>_base).

One grpc.aio client (upb messages, one channel, closed loop, concurrency 1/16/64). Every
server's replies are checked first (exact equality for the in-memory ones). Rounds are
interleaved (the config order rotates each round); each cell is the median (min-max) of
the rounds and ratios are computed within a round first. --profile runs pyinstrument in the
runtime_mem and service_db servers at C=16 and writes their top frames into the results.

    python -m bench.hot_rpc [--seconds 3] [--rounds 3] [--concurrency 1,16,64]
        [--configs a,b,...] [--no-alt] [--profile] [--base REV] [--out NAME]
Writes bench/results/hot_rpc.json (+ hot_rpc_profile_*.txt with --profile), or NAME.json
(a kept run, rendered like hot_rpc, e.g. the catalog_read A/B).

Servers: bench/hot_rpc_servers.py; summary, findings and table: bench/hot_rpc_report.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS,
    ROOT,
    BenchFailed,
    Result,
    closed_loop,
    free_port,
    pin_self,
    pinned,
    proc_cpu_s,
    wait_grpc_serving,
    write_result,
)
from bench.hot_rpc_report import run_profiled, summarize, table
from bench.hot_rpc_servers import (
    ALT_SERVER,
    alt_python,
    generate_alt,
    load_catalog,
    serve_grpcio,
    serve_grpclib_upb,
    serve_runtime_mem,
    upb_products,
)
from shop.product.v1 import product_pb2 as pb
from shop.topology import SERVICES

SERVICE = "/shop.product.v1.ProductService"
MAX_CALLS = 60_000  # per point
CONFIGS = ("runtime_mem", "grpclib_upb", "grpcio", "betterproto", "betterproto2", "service_db",
           "service_db_old", "service_db_nocache", "service_db_sqla")  # fmt: skip
BASE_CONFIGS = ("runtime_mem_base", "service_db_base")  # need --base REV
OLD_DB_ENV = {"PRODUCT_DB_POOL_PRE_PING": "true", "PRODUCT_DB_READ_SNAPSHOT": "always",
              "PRODUCT_CACHE_ENABLED": "false", "PRODUCT_DB_RAW_READS": "false"}  # fmt: skip
NEW_DB_ENV = {"PRODUCT_DB_POOL_PRE_PING": "false", "PRODUCT_DB_READ_SNAPSHOT": "multi"}
# the catalog read path's steps: cache off (raw prepared reads), and SQLAlchemy Core reads
DB_VARIANT_ENV = {
    "service_db_nocache": {"PRODUCT_CACHE_ENABLED": "false"},
    "service_db_sqla": {"PRODUCT_CACHE_ENABLED": "false", "PRODUCT_DB_RAW_READS": "false"},
}


# ================================================================== client


class Client:
    """grpc.aio client with upb messages over one channel (the same for every server)."""

    def __init__(self, port: int) -> None:
        import grpc

        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.get = self.channel.unary_unary(
            f"{SERVICE}/GetProduct",
            request_serializer=pb.GetProductRequest.SerializeToString,
            response_deserializer=pb.GetProductResponse.FromString,
        )
        self.list = self.channel.unary_unary(
            f"{SERVICE}/ListProducts",
            request_serializer=pb.ListProductsRequest.SerializeToString,
            response_deserializer=pb.ListProductsResponse.FromString,
        )

    async def close(self) -> None:
        await self.channel.close()


async def verify(name: str, client: Client, data: dict[str, Any], exact: bool) -> None:
    import grpc

    products = upb_products(data)
    for p in products:
        got = await client.get(pb.GetProductRequest(id=p.id), timeout=5)
        if got.product.id != p.id or (exact and got.product != p):
            raise BenchFailed(f"{name}: GetProduct({p.id}) differs from the catalog")
    page = await client.list(pb.ListProductsRequest(page_size=20), timeout=5)
    if len(page.products) != 20:
        raise BenchFailed(f"{name}: ListProducts returned {len(page.products)} products")
    if exact and page != pb.ListProductsResponse(
        products=products, next_page_token=data["next_page_token"]
    ):
        raise BenchFailed(f"{name}: ListProducts differs from the catalog")
    try:
        await client.get(pb.GetProductRequest(id="p-9999999"), timeout=5)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise BenchFailed(f"{name}: missing product gave {exc.code()}") from None
    else:
        raise BenchFailed(f"{name}: missing product did not give NOT_FOUND")


# ================================================================== orchestration


def base_tree(rev: str) -> Path:
    """A detached worktree of `rev` under /tmp (created once, reused), for the *_base configs."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, check=True,
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    path = Path(tempfile.gettempdir()) / f"shopmesh-bench-{sha[:12]}"
    if not (path / "services").exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
    return path


class Fleet:
    """The server processes, all pinned to core 0, started once and reused by every round."""

    def __init__(self, tmp: Path, data_file: Path, profile: bool, base: Path | None = None) -> None:
        self.tmp = tmp
        self.data_file = data_file
        self.profile = profile
        self.base = base  # worktree of --base REV, serving the *_base configs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def _env(self, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "PRODUCT_GRPC_PORT": str(port),
            "PRODUCT_METRICS_PORT": str(free_port()),
            "PRODUCT_MIGRATE_ON_START": "false",
            "SHOPMESH_TRACE_DIR": str(self.tmp / "traces"),
            **(extra or {}),
        }

    def start(self, name: str, alt: dict[str, Path] | None = None, py: Path | None = None) -> None:
        port = free_port()
        env = self._env(port)
        cwd = ROOT
        if name in BASE_CONFIGS:
            if self.base is None:
                raise BenchFailed(f"{name} needs --base REV")
            # The old revision's packages first on sys.path (gen/ still comes from ROOT).
            cwd, name_run = self.base, name.removesuffix("_base")
            env["PYTHONPATH"] = str(self.base)
        else:
            name_run = name
        if name_run in ("runtime_mem", "grpclib_upb", "grpcio"):
            cmd = [sys.executable, "-m", "bench.hot_rpc", "--serve", name_run, "--port",
                   str(port), "--data", str(self.data_file)]  # fmt: skip
        elif name in ("betterproto", "betterproto2"):
            assert alt is not None and py is not None
            script = self.tmp / "alt_server.py"
            script.write_text(ALT_SERVER)
            cmd = [str(py), str(script), name, str(alt[name]), str(port), str(self.data_file)]
        elif name_run in ("service_db", "service_db_old"):
            env.update(NEW_DB_ENV if name_run == "service_db" else OLD_DB_ENV)
            cmd = [sys.executable, "-m", "services.product.main"]
        elif name_run in DB_VARIANT_ENV:
            env.update({**NEW_DB_ENV, **DB_VARIANT_ENV[name_run]})
            cmd = [sys.executable, "-m", "services.product.main"]
        else:
            raise BenchFailed(f"unknown config {name}")
        if self.profile and name in ("runtime_mem", "service_db"):
            env["BENCH_PROFILE_OUT"] = str(self.tmp / f"profile_{name}")
            cmd = [sys.executable, "-m", "bench.hot_rpc", "--profiled", *cmd[1:]]
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115
        self.procs[name] = subprocess.Popen(
            pinned(cmd, 0), cwd=cwd, env=env, stdout=log, stderr=log
        )
        self.ports[name] = port

    def stop(self) -> None:
        for p in self.procs.values():
            p.terminate()
        for name, p in self.procs.items():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                print(f"{name} did not stop on SIGTERM, killed", file=sys.stderr)


async def measure(
    fleet: Fleet, name: str, rpc: str, c: int, seconds: float, ids: list[str]
) -> dict[str, Any]:
    client = Client(fleet.ports[name])
    try:
        if rpc == "GetProduct":
            reqs = [pb.GetProductRequest(id=i) for i in ids]

            async def call(w: int, i: int) -> Any:
                return await client.get(reqs[(w * 7 + i) % len(reqs)], timeout=10)
        else:
            req = pb.ListProductsRequest(page_size=20)

            async def call(w: int, i: int) -> Any:
                return await client.list(req, timeout=10)

        pid = fleet.procs[name].pid
        warmup = min(1.0, seconds / 3)
        mark: list[tuple[float, float]] = []
        # Server CPU from the end of the warm-up to the end of the window: its CPU cost per
        # call holds even when the shared box gives the pinned core to someone else.
        asyncio.get_running_loop().call_later(
            warmup, lambda: mark.append((proc_cpu_s(pid), time.perf_counter()))
        )
        res: Result = await closed_loop(
            call, c, seconds, MAX_CALLS, warmup=warmup, what=f"{name} {rpc} C={c}"
        )
        cpu1, t1 = proc_cpu_s(pid), time.perf_counter()
        cpu0, t0 = mark[0] if mark else (cpu1, t1)
        res.extra["server_cpu"] = round((cpu1 - cpu0) / max(1e-9, t1 - t0), 2)
        res.extra["server_cpu_us_per_call"] = round((cpu1 - cpu0) / res.calls * 1e6, 1)
    finally:
        await client.close()
    return {"config": name, "rpc": rpc, **res.as_dict()}


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    data = await load_catalog(args.catalog_port)
    data_file = tmp / "catalog.json"
    data_file.write_text(json.dumps(data))
    ids = [p.id for p in upb_products(data)]
    configs = list(args.configs)
    alt: dict[str, Path] = {}
    py: Path | None = None
    skipped: dict[str, str] = {}
    if any(c.startswith("betterproto") for c in configs):
        try:
            py = alt_python()
            alt = generate_alt(py, tmp)
        except (subprocess.CalledProcessError, OSError) as exc:
            for c in ("betterproto", "betterproto2"):
                if c in configs:
                    configs.remove(c)
                    skipped[c] = f"alt venv/codegen failed: {exc}"[:300]
            print(f"SKIP betterproto configs: {exc}", file=sys.stderr)
    base = base_tree(args.base) if getattr(args, "base", None) else None
    fleet = Fleet(tmp, data_file, args.profile, base)
    points: list[dict[str, Any]] = []
    profiles: dict[str, Any] = {}
    try:
        for name in configs:
            fleet.start(name, alt, py)
        for name in configs:
            await wait_grpc_serving(fleet.ports[name], 90)
            client = Client(fleet.ports[name])
            try:
                await verify(name, client, data, exact=not name.startswith("service_db"))
            finally:
                await client.close()
        pin_self(1)
        for rnd in range(args.rounds):
            order = configs[rnd % len(configs) :] + configs[: rnd % len(configs)]
            for rpc in ("GetProduct", "ListProducts"):
                for c in args.concurrency:
                    for name in order:
                        p = await measure(fleet, name, rpc, c, args.seconds, ids)
                        p["round"] = rnd
                        points.append(p)
                        print(
                            f"r{rnd} {rpc:<12} C={c:<3} {name:<15} {p['per_s']:>8.1f}/s "
                            f"p50 {p['p50_ms']:.2f} p99 {p['p99_ms']:.2f} ms "
                            f"srv cpu {p['server_cpu']} {p['server_cpu_us_per_call']} us/call",
                            flush=True,
                        )
        if args.profile:
            for name in [c for c in configs if c in ("runtime_mem", "service_db")]:
                pid = fleet.procs[name].pid
                os.kill(pid, signal.SIGUSR1)
                await measure(fleet, name, "GetProduct", 16, max(args.seconds, 4), ids)
                os.kill(pid, signal.SIGUSR2)
                out = tmp / f"profile_{name}.json"
                for _ in range(300):  # rendering the report takes a while on a busy box
                    if out.exists():
                        break
                    await asyncio.sleep(0.1)
    finally:
        fleet.stop()
    if args.profile:
        for name in ("runtime_mem", "service_db", "service_db_old"):
            out = tmp / f"profile_{name}.json"
            if out.exists():
                profiles[name] = json.loads(out.read_text())
                txt = tmp / f"profile_{name}.txt"
                if txt.exists():
                    (RESULTS / f"hot_rpc_profile_{name}.txt").write_text(txt.read_text())
    return summarize(points, configs, args, skipped, profiles)


# ================================================================== CLI


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--no-alt", action="store_true", help="skip the betterproto configs")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--base", help="git revision serving the *_base configs (A/B)")
    ap.add_argument("--out", help="result name (default hot_rpc): a kept A/B run")
    ap.add_argument(
        "--catalog-port",
        type=int,
        default=int(os.environ.get("PRODUCT_PORT", SERVICES["product"].port)),
    )
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    if len(sys.argv) > 1 and sys.argv[1] == "--profiled":
        run_profiled(sys.argv[2:])
        return
    args = ap.parse_args()
    if args.serve:
        data = json.loads(Path(args.data).read_text())
        {"runtime_mem": serve_runtime_mem, "grpclib_upb": serve_grpclib_upb,
         "grpcio": serve_grpcio}[args.serve](args.port, data)  # fmt: skip
        return
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.configs = [c for c in args.configs.split(",") if c]
    if args.no_alt:
        args.configs = [c for c in args.configs if not c.startswith("betterproto")]
    with tempfile.TemporaryDirectory(prefix="hot-rpc-") as tmp:
        result = asyncio.run(bench(args, Path(tmp)))
    if args.out:
        result["benchmark"] = "hot_rpc"  # report.py renders a kept run like hot_rpc
    path = write_result(args.out or "hot_rpc", result)
    print(table(result))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
