"""Adding an RPC is the .proto plus its handler. In a copy of the tree (tests/e2e/
tree_copy.py) the test adds PingCatalog to product.proto and its handler to the product
service's handlers.py, and nothing else; the copy's own `make gen` steps regenerate stubs,
descriptor set and mesh config, the copy's product service runs as a real process (on the
stack's PostgreSQL), and a private NGINX -> Envoy pair rendered by the copy's generator
reaches the new method over REST and gRPC-Web, with its OpenAPI path published."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from mesh.stubs import message_class, service_of
from mesh.testing import (
    EXTRA_MESSAGES,
    EXTRA_RPC,
    GRPC_WEB_HEADERS,
    PrivateEnvoy,
    free_port,
    grpc_web_parse,
    grpc_web_request,
)
from tests.e2e.tree_copy import TreeCopy, wait_serving

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

PROTO = "schemas/proto/shop/product/v1/product.proto"
SERVICE = "shop.product.v1.ProductService"
PATH = f"/{SERVICE}/PingCatalog"

# The handler, as a developer would write it: the request mapped to a use case that reads
# the catalog (through the service's unit of work, on the replica), mapped to the response.
HANDLER = """
    @unary
    async def PingCatalog(self, request: pb.PingCatalogRequest) -> pb.PingCatalogResponse:
        categories = await service.list_categories(self.uow())
        return pb.PingCatalogResponse(
            greeting=f"hello {request.name} from {len(categories)} categories"
        )
"""


async def test_a_new_rpc_is_its_proto_plus_its_handler(stack, tmp_path) -> None:
    stack.require("postgres-replica", "product")
    tree = TreeCopy(tmp_path).create()
    anchor = "service ProductService {\n"
    proto = tree.path(PROTO).read_text()
    assert anchor in proto, "product.proto layout changed"
    tree.write(PROTO, proto.replace(anchor, anchor + EXTRA_RPC, 1) + EXTRA_MESSAGES)
    tree.insert_after(
        "services/product/handlers.py",
        "class ProductHandlers(product_grpc.ProductServiceBase):",
        HANDLER,
    )
    await asyncio.to_thread(tree.generate)

    port, log = free_port(), tmp_path / "product.log"
    proc = tree.start(
        "services.product.main",
        log,
        PRODUCT_GRPC_PORT=str(port),
        PRODUCT_METRICS_PORT=str(free_port()),
        PRODUCT_WORKERS="1",
        PRODUCT_MIGRATE_ON_START="false",  # the stack's product database, as it is
    )
    envoy = gateway = None
    try:
        await wait_serving(port, proc, log)
        config, edge, admin = tree.envoy_config({"product": [("127.0.0.1", port)]})
        envoy = PrivateEnvoy(config, tmp_path / "envoy", admin)
        await asyncio.to_thread(envoy.__enter__)
        gateway = tree.nginx(tmp_path / "nginx", edge)
        await asyncio.to_thread(gateway.__enter__)

        method = service_of(tree.path("gen/descriptor/shop.binpb"), SERVICE).methods_by_name[
            "PingCatalog"
        ]
        request, reply = message_class(method.input_type), message_class(method.output_type)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
            rest = await client.get("/api/v1/catalog/ping/bob")
            assert rest.status_code == 200, rest.text
            greeting = rest.json()["greeting"]
            assert greeting.startswith("hello bob from ") and greeting.endswith(" categories")
            assert int(greeting.split()[3]) >= 1  # the demo catalog's categories

            body = grpc_web_request(request(name="web").SerializeToString())
            web = await client.post("/api" + PATH, content=body, headers=GRPC_WEB_HEADERS)
            assert web.status_code == 200
            messages, trailers = grpc_web_parse(web.content, dict(web.headers))
            assert trailers["grpc-status"] == "0", trailers
            assert reply.FromString(messages[0]).greeting.startswith("hello web from ")

            spec = (await client.get("/api/openapi.json")).json()
            assert "/api/v1/catalog/ping/{name}" in spec["paths"]
    finally:
        if gateway is not None:
            await asyncio.to_thread(gateway.__exit__)
        if envoy is not None:
            await asyncio.to_thread(envoy.__exit__)
        tree.stop_all()
    served = (log.read_text() if log.exists() else "").count("PingCatalog")
    assert served >= 2, "the copy's product service logged no PingCatalog calls"
