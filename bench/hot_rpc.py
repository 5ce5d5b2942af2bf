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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS,
    ROOT,
    BenchFailed,
    Result,
    closed_loop,
    fmt_range,
    free_port,
    median_range,
    pin_self,
    pinned,
    proc_cpu_s,
    wait_grpc_serving,
    write_result,
)
from shop.product.v1 import product_pb2 as pb

SERVICE = "/shop.product.v1.ProductService"
VENV = Path(os.environ.get("SHOPMESH_BENCH_VENV", Path.home() / ".cache/shopmesh/bench-venv"))
ALT_PINS = ["betterproto[compiler]==2.0.0b7", "betterproto2==0.10.0",
            "betterproto2_compiler==0.10.1", "grpclib==0.4.9", "grpcio-tools==1.85.1",
            "protobuf==7.36.2"]  # fmt: skip
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


# ================================================================== data


async def load_catalog(port: int) -> dict[str, Any]:
    """The first page (20, by name) of the stack's catalog, as upb bytes (hex)."""
    from grpclib.client import Channel

    from shop.product.v1 import product_grpc

    async def fetch() -> dict[str, Any]:
        ch = Channel("127.0.0.1", port)
        try:
            page = await product_grpc.ProductServiceStub(ch).ListProducts(
                pb.ListProductsRequest(page_size=20)
            )
        finally:
            ch.close()
        if len(page.products) != 20:
            raise BenchFailed("catalog has < 20 products: python -m services.product.demo")
        return {
            "products": [p.SerializeToString().hex() for p in page.products],
            "next_page_token": page.next_page_token,
        }

    return await fetch()


def upb_products(data: dict[str, Any]) -> list[pb.Product]:
    return [pb.Product.FromString(bytes.fromhex(h)) for h in data["products"]]


# ================================================================== servers (upb, in this venv)


def serve_runtime_mem(port: int, data: dict[str, Any]) -> None:
    """The product handlers on the runtime exactly as main.py wires them, minus the DB."""
    from services.product.config import ProductConfig
    from services.product.domain import Money, Page, Product
    from services.product.handlers import ProductHandlers
    from services.runtime.metrics import Metrics
    from services.runtime.server import run, serve

    def domain(p: pb.Product) -> Product:
        return Product(
            id=p.id, sku=p.sku, name=p.name, description=p.description, category=p.category,
            price=Money(p.price.currency_code, p.price.units, p.price.nanos),
            image_urls=tuple(p.image_urls), stock=p.stock,
            created_at=p.create_time.ToDatetime(tzinfo=__import__("datetime").UTC),
            updated_at=p.update_time.ToDatetime(tzinfo=__import__("datetime").UTC),
        )  # fmt: skip

    products = [domain(p) for p in upb_products(data)]
    by_id = {p.id: p for p in products}
    page = Page(tuple(sorted(products, key=lambda p: (p.name, p.id))), data["next_page_token"])

    class MemoryRepo:
        async def get(self, product_id: str) -> Product | None:
            return by_id.get(product_id)

        async def list_page(self, query: Any) -> Page:
            return page

    class MemoryUow:
        @asynccontextmanager
        async def read(self) -> AsyncIterator[MemoryRepo]:
            yield MemoryRepo()

        write = read

    async def main() -> int:
        config = ProductConfig.from_env()
        handlers = ProductHandlers(MemoryUow)  # type: ignore[arg-type]
        return await serve(config.server, [handlers], [], metrics=Metrics("product"))

    run(main)


def serve_grpclib_upb(port: int, data: dict[str, Any]) -> None:
    from grpclib import GRPCError, Status
    from grpclib.health.service import Health
    from grpclib.server import Server

    from mesh.stubs import Stub

    products = upb_products(data)
    by_id = {p.id: p for p in products}
    token = data["next_page_token"]

    async def get_product(req: pb.GetProductRequest) -> pb.GetProductResponse:
        p = by_id.get(req.id)
        if p is None:
            raise GRPCError(Status.NOT_FOUND, "product not found")
        return pb.GetProductResponse(product=p)

    # A stub from the service descriptor (mesh/stubs.py): the other methods UNIMPLEMENTED.
    memory = Stub(
        pb.DESCRIPTOR.services_by_name["ProductService"],
        {
            "GetProduct": get_product,
            # built per call, as the other variants do
            "ListProducts": lambda req: pb.ListProductsResponse(
                products=products, next_page_token=token
            ),
        },
    )

    async def main() -> None:
        server = Server([memory, Health()])
        await server.start("127.0.0.1", port)
        await server.wait_closed()

    _run_forever(main())


def serve_grpcio(port: int, data: dict[str, Any]) -> None:
    import grpc
    from grpclib.health.v1 import health_pb2  # just the messages (grpcio-health not needed)

    products = upb_products(data)
    by_id = {p.id: p for p in products}
    token = data["next_page_token"]

    async def get(req: pb.GetProductRequest, ctx: Any) -> pb.GetProductResponse:
        p = by_id.get(req.id)
        if p is None:
            await ctx.abort(grpc.StatusCode.NOT_FOUND, "product not found")
        return pb.GetProductResponse(product=p)

    async def lst(req: pb.ListProductsRequest, ctx: Any) -> pb.ListProductsResponse:
        return pb.ListProductsResponse(products=products, next_page_token=token)

    def rpc(fn: Any, req: Any, rep: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=req.FromString, response_serializer=rep.SerializeToString
        )

    handler = grpc.method_handlers_generic_handler(
        "shop.product.v1.ProductService",
        {
            "GetProduct": rpc(get, pb.GetProductRequest, pb.GetProductResponse),
            "ListProducts": rpc(lst, pb.ListProductsRequest, pb.ListProductsResponse),
        },
    )

    async def check(req: Any, ctx: Any) -> Any:
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    health_handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {"Check": rpc(check, health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse)},
    )

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([handler])
        server.add_generic_rpc_handlers([health_handler])
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())  # grpc.aio: the default loop, as grpc_bench's python_async_grpc


def _run_forever(coro: Any) -> None:
    import signal

    async def wrapped() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(coro)
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(wrapped())


# ================================================================== betterproto (other venv)

ALT_SERVER = r"""
import asyncio, json, signal, sys
lib, gen, port, data_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
from grpclib import GRPCError, Status
from grpclib.health.service import Health
from grpclib.server import Server
sys.path.insert(0, gen)
import importlib
m = importlib.import_module("pkg.shop.product.v1")
data = json.load(open(data_path))
products = [m.Product().parse(bytes.fromhex(h)) if lib == "betterproto"
            else m.Product.parse(bytes.fromhex(h)) for h in data["products"]]
by_id = {p.id: p for p in products}
token = data["next_page_token"]

class Svc(m.ProductServiceBase):
    async def get_product(self, req):
        p = by_id.get(req.id)
        if p is None:
            raise GRPCError(Status.NOT_FOUND, "product not found")
        return m.GetProductResponse(product=p)

    async def list_products(self, req):
        return m.ListProductsResponse(products=list(products), next_page_token=token)

async def main():
    server = Server([Svc(), Health()])
    await server.start("127.0.0.1", port)
    task = asyncio.ensure_future(server.wait_closed())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        server.close()

asyncio.run(main())
"""


def alt_python() -> Path:
    """The separate venv with betterproto + betterproto2 (created on first use)."""
    py = VENV / "bin" / "python"
    stamp = VENV / ".pins"
    if not py.exists() or not stamp.exists() or stamp.read_text() != "\n".join(ALT_PINS):
        VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *ALT_PINS], check=True)
        stamp.write_text("\n".join(ALT_PINS))
    return py


def stripped_descriptor(out: Path) -> None:
    """product + common + timestamp with the validate/mesh/http options removed: same wire
    format, and the betterproto compilers need not know buf.validate or google.api."""
    from google.protobuf import descriptor_pb2

    full = descriptor_pb2.FileDescriptorSet.FromString(
        (ROOT / "gen/descriptor/shop.binpb").read_bytes()
    )
    keep = ("google/protobuf/timestamp.proto", "shop/common/v1/common.proto",
            "shop/product/v1/product.proto")  # fmt: skip
    fds = descriptor_pb2.FileDescriptorSet()
    for f in full.file:
        if f.name not in keep:
            continue
        f = _copy(fds, f)
        if f.name.startswith("shop/"):
            deps = [d for d in f.dependency if d in keep]
            del f.dependency[:]
            f.dependency.extend(deps)
            f.ClearField("public_dependency")
            f.ClearField("weak_dependency")
            f.options.Clear()
            f.ClearField("options")
            for msg in f.message_type:
                _strip_msg(msg)
            for svc in f.service:
                svc.ClearField("options")
                for meth in svc.method:
                    meth.ClearField("options")
    out.write_bytes(fds.SerializeToString())


def _copy(fds: Any, f: Any) -> Any:
    new = fds.file.add()
    new.CopyFrom(f)
    return new


def _strip_msg(msg: Any) -> None:
    msg.ClearField("options")
    for fld in msg.field:
        fld.ClearField("options")
    for o in msg.oneof_decl:
        o.ClearField("options")
    for nested in msg.nested_type:
        _strip_msg(nested)


def generate_alt(py: Path, tmp: Path) -> dict[str, Path]:
    desc = tmp / "product.binpb"
    stripped_descriptor(desc)
    env = {**os.environ, "PATH": f"{py.parent}:{os.environ['PATH']}"}
    out = {}
    for lib, flags in (
        ("betterproto", ["--python_betterproto_out={d}"]),
        ("betterproto2", ["--python_betterproto2_out={d}",
                          "--python_betterproto2_opt=client_generation=async,"
                          "server_generation=async"]),
    ):  # fmt: skip
        # Generated into a package of its own: betterproto2's relative imports reach the
        # output root, and its google/protobuf must not shadow the real one.
        d = tmp / lib / "pkg"
        d.mkdir(parents=True)
        cmd = [str(py), "-m", "grpc_tools.protoc", f"--descriptor_set_in={desc}",
               *(f.format(d=d) for f in flags), "shop/common/v1/common.proto",
               "shop/product/v1/product.proto"]  # fmt: skip
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        (d / "__init__.py").touch()
        out[lib] = d.parent
    return out


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


def summarize(
    points: list[dict[str, Any]],
    configs: list[str],
    args: argparse.Namespace,
    skipped: dict[str, str],
    profiles: dict[str, Any],
) -> dict[str, Any]:
    ref = "grpcio" if "grpcio" in configs else configs[0]
    cells: list[dict[str, Any]] = []
    for rpc in ("GetProduct", "ListProducts"):
        for c in args.concurrency:
            for name in configs:
                mine = [p for p in points if (p["config"], p["rpc"], p["concurrency"]) ==
                        (name, rpc, c)]  # fmt: skip
                ratios, ab, cost = [], [], []
                for p in mine:
                    base = next(
                        q for q in points
                        if (q["config"], q["rpc"], q["concurrency"], q["round"]) ==
                        (ref, rpc, c, p["round"])
                    )  # fmt: skip
                    ratios.append(p["per_s"] / base["per_s"])
                    cost.append(base["server_cpu_us_per_call"] / p["server_cpu_us_per_call"])
                    for other in (f"{name}_old", f"{name}_base"):
                        if other not in configs:
                            continue
                        old = next(
                            q for q in points
                            if (q["config"], q["rpc"], q["concurrency"], q["round"]) ==
                            (other, rpc, c, p["round"])
                        )  # fmt: skip
                        ab.append(
                            (
                                other,
                                p["per_s"] / old["per_s"],
                                old["server_cpu_us_per_call"] / p["server_cpu_us_per_call"],
                            )
                        )
                cell = {
                    "rpc": rpc, "concurrency": c, "config": name,
                    "per_s": median_range((p["per_s"] for p in mine), 1),
                    "p50_ms": median_range(p["p50_ms"] for p in mine),
                    "p99_ms": median_range(p["p99_ms"] for p in mine),
                    "server_cpu": median_range((p["server_cpu"] for p in mine), 2),
                    "server_cpu_us_per_call": median_range(
                        (p["server_cpu_us_per_call"] for p in mine), 1),
                    f"ratio_vs_{ref}": median_range(ratios),
                    f"cpu_ratio_vs_{ref}": median_range(cost),
                }  # fmt: skip
                for other in dict.fromkeys(o for o, _, _ in ab):
                    cell[f"ratio_vs_{other}"] = median_range(r for o, r, _ in ab if o == other)
                    cell[f"cpu_ratio_vs_{other}"] = median_range(r for o, _, r in ab if o == other)
                cells.append(cell)
    return {
        "what": "GetProduct (rotating over 20 ids) and ListProducts(page_size=20); server "
        "pinned to core 0, one grpc.aio client on core 1; per cell median (min-max) of the "
        "rounds, ratios computed within a round. cpu_ratio = reference's server CPU per call "
        "/ this config's (>1 = cheaper); it excludes PostgreSQL's CPU for service_db*",
        "reference": ref,
        "settings": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "configs": configs,
        },
        "versions_alt": {"betterproto": "2.0.0b7", "betterproto2": "0.10.0 (compiler 0.10.1)"},
        "skipped": skipped,
        "cells": cells,
        "points": points,
        "profiles": profiles,
    }


# Which part of the stack a profiled frame belongs to (first match on its short path).
PROFILE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("HTTP/2 transport (grpclib, h2, hpack, hyperframe)", ("grpclib/", "h2/", "hpack/",
                                                           "hyperframe/")),
    ("OpenTelemetry", ("opentelemetry/",)),
    ("logging", ("logging/", "services/runtime/logs")),
    ("prometheus_client", ("prometheus_client/",)),
    ("our runtime and handlers", ("services/",)),
    ("database (SQLAlchemy, asyncpg)", ("sqlalchemy/", "asyncpg/")),
    ("protobuf", ("google/protobuf/",)),
    ("C builtins", ("<built-in>",)),
)  # fmt: skip


def profile_groups(prof: dict[str, Any]) -> dict[str, float]:
    """Share of the sampled self time per stack part, over the profile's top frames."""
    out: dict[str, float] = {}
    for t in prof.get("top_self", []):
        frame = t["frame"]
        group = next((g for g, pre in PROFILE_GROUPS if frame.startswith(pre)), "other")
        out[group] = out.get(group, 0.0) + t["share"]
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def findings(result: dict[str, Any]) -> list[str]:
    """What the cells and profiles of one run say, derived from them (never hand-written,
    so they cannot go stale against the table above them)."""
    ref = result["reference"]
    cells = result["cells"]

    def span(config: str, key: str, rpc: str | None = None) -> tuple[float, float] | None:
        vals = [c[key]["median"] for c in cells
                if c["config"] == config and (rpc is None or c["rpc"] == rpc)]  # fmt: skip
        return (min(vals), max(vals)) if vals else None

    def cpu_gap(a: str, b: str) -> tuple[float, float] | None:
        gaps = [
            x["server_cpu_us_per_call"]["median"] - y["server_cpu_us_per_call"]["median"]
            for x in cells if x["config"] == a
            for y in cells
            if y["config"] == b and (y["rpc"], y["concurrency"]) == (x["rpc"], x["concurrency"])
        ]  # fmt: skip
        return (min(gaps), max(gaps)) if gaps else None

    out: list[str] = []
    rt, bare = span("runtime_mem", f"ratio_vs_{ref}"), span("grpclib_upb", f"ratio_vs_{ref}")
    gap = cpu_gap("runtime_mem", "grpclib_upb")
    if rt and bare and gap:
        out.append(
            f"Largest gap: our runtime without a DB (runtime_mem) serves {rt[0]:.2f}-{rt[1]:.2f}x "
            f"the calls/s of {ref}; bare grpclib + upb on the same data {bare[0]:.2f}-"
            f"{bare[1]:.2f}x. The difference is the runtime's per-call work (validation, "
            f"auth hook, span, metrics, access log): {gap[0]:.0f}-{gap[1]:.0f} us of server "
            "CPU per call more than bare grpclib."
        )
    steps = [(c, label) for c, label in (
        ("service_db_base", "the code before (--base)"), ("service_db_sqla", "SQLAlchemy Core"),
        ("service_db_nocache", "raw prepared reads, no cache"), ("service_db", "cache on"),
        ("runtime_mem", "no database at all")) if any(x["config"] == c for x in cells)]  # fmt: skip
    step_names = {c for c, _ in steps}
    if "service_db" in step_names and step_names & {"service_db_nocache", "service_db_base"}:
        for rpc in ("GetProduct", "ListProducts"):
            per = []
            for c, label in steps:
                us = [x["server_cpu_us_per_call"]["median"] for x in cells
                      if x["config"] == c and x["rpc"] == rpc]  # fmt: skip
                per.append(f"{label} {min(us):.0f}-{max(us):.0f}")
            out.append(
                f"Catalog read path, {rpc}: product-service CPU per call (us, range over the "
                f"concurrencies): " + "; ".join(per) + "."
            )
    db = cpu_gap("service_db", "runtime_mem")
    if "service_db_nocache" in step_names:
        db = None  # service_db is cached there: the steps above say what the database costs
    if db:
        out.append(
            f"The real database path (service_db) adds {db[0]:.0f}-{db[1]:.0f} us of "
            "product-service CPU per call over runtime_mem (SQLAlchemy Core + asyncpg + the "
            "statement span), PostgreSQL's own CPU not counted."
        )
    upb = span("grpclib_upb", f"ratio_vs_{ref}", "ListProducts")
    for alt in ("betterproto", "betterproto2"):
        g = span(alt, f"ratio_vs_{ref}", "GetProduct")
        lp = span(alt, f"ratio_vs_{ref}", "ListProducts")
        if g and lp and upb:
            verdict = (
                "ARCHITECTURE 3a's choice of upb messages holds"
                if lp[1] < upb[0]
                else "the gap to upb has closed on some cells: revisit ARCHITECTURE 3a"
            )
            out.append(
                f"{alt}: GetProduct {g[0]:.2f}-{g[1]:.2f}x, ListProducts(20) {lp[0]:.2f}-"
                f"{lp[1]:.2f}x of {ref}, against {upb[0]:.2f}-{upb[1]:.2f}x for grpclib + upb "
                f"on ListProducts: {verdict}."
            )
    for name, prof in (result.get("profiles") or {}).items():
        groups = profile_groups(prof)
        if groups:
            parts = ", ".join(f"{g} {s * 100:.0f}%" for g, s in groups.items())
            out.append(
                f"Where {name}'s samples go (self time of its top {len(prof['top_self'])} "
                f"frames, {sum(groups.values()) * 100:.0f}% of all samples): {parts}; the "
                f"call tree is in results/hot_rpc_profile_{name}.txt."
            )
    return out


def table(result: dict[str, Any]) -> str:
    ref = result["reference"]
    lines = [
        f"| RPC | C | config | calls/s | ratio vs {ref} | srv µs CPU/call | CPU-cost ratio "
        f"vs {ref} | p50 ms | p99 ms | srv CPU |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in result["cells"]:
        lines.append(
            f"| {cell['rpc']} | {cell['concurrency']} | {cell['config']} | "
            f"{fmt_range(cell['per_s'], 0)} | {fmt_range(cell[f'ratio_vs_{ref}'])} | "
            f"{fmt_range(cell['server_cpu_us_per_call'], 0)} | "
            f"{fmt_range(cell[f'cpu_ratio_vs_{ref}'])} | "
            f"{fmt_range(cell['p50_ms'])} | {fmt_range(cell['p99_ms'])} | "
            f"{cell['server_cpu']['median']:.2f} |"
        )
    return "\n".join(lines)


# ================================================================== profiling wrapper


def run_profiled(argv: list[str]) -> None:
    """Run `python -m <module> ...` under pyinstrument, profiling only between SIGUSR1 and
    SIGUSR2 (a bounded window: a whole-run session is too big to render), then write the
    text report and the top self-time frames to $BENCH_PROFILE_OUT.{txt,json}."""
    import runpy
    import signal

    from pyinstrument import Profiler

    out = os.environ["BENCH_PROFILE_OUT"]
    profiler = Profiler(interval=0.001, async_mode="disabled")

    def start(*_: Any) -> None:
        profiler.start()

    def stop(*_: Any) -> None:
        profiler.stop()
        Path(out + ".txt").write_text(
            profiler.output_text(unicode=False, color=False, show_all=False)
        )
        Path(out + ".json").write_text(json.dumps(top_frames(profiler.last_session), indent=1))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


def top_frames(session: Any, n: int = 25) -> dict[str, Any]:
    """Self time by function (file:function), top n, as share of all samples."""
    totals: dict[str, float] = {}
    root = session.root_frame()
    stack = [root]
    while stack:
        fr = stack.pop()
        stack.extend(fr.children)
        key = f"{fr.file_path_short}:{fr.function}"
        totals[key] = totals.get(key, 0.0) + fr.total_self_time
    whole = sum(totals.values()) or 1.0
    # time the loop spent waiting for I/O (epoll/select): the process was idle, not busy
    idle = sum(v for k, v in totals.items() if k.endswith((":select", ":poll", ":run_once")))
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:n]
    return {
        "duration_s": round(session.duration, 2),
        "sampled_s": round(whole, 3),
        "idle_s": round(idle, 3),
        "top_self": [{"frame": k, "share": round(v / whole, 4)} for k, v in top],
    }


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
    ap.add_argument("--catalog-port", type=int, default=int(os.environ.get("PRODUCT_PORT", 50051)))
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
