"""The servers bench/hot_rpc.py compares: the catalog they all answer from, our runtime
without the DB, a bare grpclib server, a grpc.aio server, and the betterproto /
betterproto2 servers generated into a temp dir from a separate venv.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    BenchFailed,
)
from shop.product.v1 import product_pb2 as pb

VENV = Path(os.environ.get("SHOPMESH_BENCH_VENV", Path.home() / ".cache/shopmesh/bench-venv"))
ALT_PINS = ["betterproto[compiler]==2.0.0b7", "betterproto2==0.10.0",
            "betterproto2_compiler==0.10.1", "grpclib==0.4.9", "grpcio-tools==1.85.1",
            "protobuf==7.36.2"]  # fmt: skip
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
