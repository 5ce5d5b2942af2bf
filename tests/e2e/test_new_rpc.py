"""Adding an RPC to a .proto and running the generator makes it reachable over REST and
gRPC-Web with no hand-written config. Done on a temp copy of the schemas (the real ones are
never touched): buf builds the copy's descriptor set, the generator writes a temp mesh/out,
and a private NGINX -> Envoy pair from that output (the gateway path a browser takes) routes
to an upstream serving the new method."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
from google.protobuf import descriptor_pb2, message_factory
from grpclib.const import Cardinality, Handler
from grpclib.health.service import Health
from grpclib.server import Server, Stream

from mesh import envoy, generate, nginx
from mesh.api import load
from mesh.testing import (
    GRPC_WEB_HEADERS,
    PrivateEnvoy,
    descriptor_with_extra_rpc,
    free_port,
    grpc_web_parse,
    grpc_web_request,
)

PATH = "/shop.product.v1.ProductService/PingCatalog"
NGINX_BIN = Path("/usr/sbin/nginx")


def start_nginx(prefix: Path, listen: int, envoy_port: int) -> subprocess.Popen[bytes]:
    """NGINX from the generator's template on spare ports, in front of `envoy_port`."""
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    (prefix / "html").mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        nginx.render(
            nginx.NginxOptions(
                listen=f"127.0.0.1:{listen}",
                envoy=f"127.0.0.1:{envoy_port}",
                status_listen=f"127.0.0.1:{free_port()}",
                access_log_buffered=False,
            )
        )
    )
    globals_ = f"daemon off; pid {prefix / 'nginx.pid'};"
    proc = subprocess.Popen(
        [str(NGINX_BIN), "-p", f"{prefix}/", "-c", str(conf), "-g", globals_],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
        try:
            httpx.get(f"http://127.0.0.1:{listen}/", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise TimeoutError("private nginx did not answer")


class Ping:
    """Serves only the new method, with message classes built from the temp descriptor."""

    def __init__(self, req: type, resp: type) -> None:
        self.req, self.resp = req, resp
        self.calls = 0

    async def ping(self, stream: Stream) -> None:
        request = await stream.recv_message()
        self.calls += 1
        await stream.send_message(self.resp(greeting=f"hello {request.name}"))

    def __mapping__(self) -> dict[str, Handler]:
        return {PATH: Handler(self.ping, Cardinality.UNARY_UNARY, self.req, self.resp)}


async def test_new_rpc_is_served_over_rest_and_grpc_web(tmp_path) -> None:
    descriptor = await asyncio.to_thread(descriptor_with_extra_rpc, tmp_path)
    out = tmp_path / "out"
    assert generate.main(["--descriptor", str(descriptor), "--out", str(out), "-q"]) == 0

    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    classes = message_factory.GetMessages(list(fds.file))
    req_cls = classes["shop.product.v1.PingCatalogRequest"]
    resp_cls = classes["shop.product.v1.PingCatalogResponse"]
    impl = Ping(req_cls, resp_cls)
    upstream_port = free_port()
    server = Server([impl, Health()])
    await server.start("127.0.0.1", upstream_port)

    edge, admin = free_port(), free_port()
    opt = envoy.EnvoyOptions(
        edge_port=edge,
        internal_port=free_port(),
        admin_port=admin,
        descriptor_path=str(out / "envoy" / "descriptor.binpb"),
        openapi_path=str(out / "openapi" / "openapi.json"),
        docs_path=str(out / "openapi" / "docs.html"),
        endpoints={"product": [("127.0.0.1", upstream_port)]},
        access_log=False,
    )
    proxy = PrivateEnvoy(envoy.build(load(descriptor), opt), tmp_path / "envoy", admin)
    await asyncio.to_thread(proxy.__enter__)
    gateway_port = free_port()
    gateway = await asyncio.to_thread(start_nginx, tmp_path / "nginx", gateway_port, edge)
    try:
        base = f"http://127.0.0.1:{gateway_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            rest = await client.get("/api/v1/catalog/ping/bob")
            assert rest.status_code == 200, rest.text
            assert rest.json() == {"greeting": "hello bob"}

            body = grpc_web_request(req_cls(name="web").SerializeToString())
            web = await client.post("/api" + PATH, content=body, headers=GRPC_WEB_HEADERS)
            assert web.status_code == 200
            messages, trailers = grpc_web_parse(web.content, dict(web.headers))
            assert trailers["grpc-status"] == "0"
            assert resp_cls.FromString(messages[0]).greeting == "hello web"

            spec = (await client.get("/api/openapi.json")).json()
            assert "/api/v1/catalog/ping/{name}" in spec["paths"]
        assert impl.calls == 2
    finally:
        gateway.terminate()
        gateway.wait(10)
        await asyncio.to_thread(proxy.__exit__)
        server.close()
        await server.wait_closed()
