"""The gateway end to end: NGINX (8080) -> Envoy (8081) -> the real product service, over
REST (JSON transcoding) and gRPC-Web (a tiny client: 5-byte frames, trailer frame), plus the
gateway's own rules: internal methods hidden, rate limit, body limit, security headers, docs.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import urllib.parse

import httpx
import pytest
from google.protobuf import json_format
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

import shop.product.v1.product_pb2 as pb
from mesh.testing import GRPC_WEB_HEADERS, grpc_web_parse, grpc_web_request
from shop.product.v1.product_grpc import ProductServiceStub
from stack.callers import service_bearer
from stack.model import state_dir

pytestmark = pytest.mark.stack

SVC = "/api/shop.product.v1.ProductService"


@pytest.fixture(scope="module")
def gateway(stack) -> str:
    stack.require("product", "nginx")
    return stack.nginx_url


@pytest.fixture
async def client(gateway) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as c:
        yield c


async def grpc_web(client: httpx.AsyncClient, method: str, request, response_cls):
    """Returns (status code, message, decoded reply or None)."""
    resp = await client.post(
        f"{SVC}/{method}",
        content=grpc_web_request(request.SerializeToString()),
        headers=GRPC_WEB_HEADERS,
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/grpc-web")
    messages, trailers = grpc_web_parse(resp.content, dict(resp.headers))
    reply = response_cls.FromString(messages[0]) if messages else None
    message = urllib.parse.unquote(trailers.get("grpc-message", ""))
    return int(trailers["grpc-status"]), message, reply


# ------------------------------------------------------------------ catalog, both protocols


async def test_rest_lists_the_demo_catalog(client) -> None:
    resp = await client.get("/api/v1/products", params={"page_size": 100})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    products = resp.json()["products"]
    assert len(products) >= 10, "the demo catalog is loaded"
    first = products[0]
    # proto field names preserved, primitives printed even when zero
    assert {"id", "name", "price", "image_urls", "stock", "create_time"} <= set(first)
    assert "currency_code" in first["price"]


async def test_grpc_web_returns_the_same_data(client) -> None:
    rest = (await client.get("/api/v1/products", params={"page_size": 100})).json()
    status, message, reply = await grpc_web(
        client, "ListProducts", pb.ListProductsRequest(page_size=100), pb.ListProductsResponse
    )
    assert status == 0, message
    assert [p.id for p in reply.products] == [p["id"] for p in rest["products"]]
    # One product field by field: REST JSON parsed back equals the gRPC-Web message.
    pid = reply.products[0].id
    one = await client.get(f"/api/v1/products/{pid}")
    assert one.status_code == 200
    from_rest = json_format.ParseDict(one.json(), pb.GetProductResponse())
    status, _, got = await grpc_web(
        client, "GetProduct", pb.GetProductRequest(id=pid), pb.GetProductResponse
    )
    assert status == 0
    assert got == from_rest


async def test_plain_grpc_through_envoy_and_the_internal_listener(stack, gateway) -> None:
    for port in (8081, 8082):
        channel = Channel("127.0.0.1", port)
        try:
            stub = ProductServiceStub(channel)
            page = await stub.ListProducts(pb.ListProductsRequest(page_size=1), timeout=5)
            got = await stub.GetProduct(pb.GetProductRequest(id=page.products[0].id), timeout=5)
        finally:
            channel.close()
        assert got.product.id == page.products[0].id


# ------------------------------------------------------------------ errors


async def test_validation_error_is_400_naming_the_field(client) -> None:
    resp = await client.get("/api/v1/products", params={"page_size": 1000})
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["code"] == 3
    assert "page_size" in json.dumps(body)


async def test_validation_error_is_invalid_argument_over_grpc_web(client) -> None:
    status, message, _ = await grpc_web(
        client, "ListProducts", pb.ListProductsRequest(page_size=1000), pb.ListProductsResponse
    )
    assert status == 3
    assert "page_size" in message


async def test_unknown_product_is_404(client) -> None:
    resp = await client.get("/api/v1/products/no-such-product")
    assert resp.status_code == 404
    assert resp.json()["code"] == 5


# ------------------------------------------------------------------ edge rules


async def test_internal_methods_are_not_reachable_from_the_gateway(client) -> None:
    req = pb.ReserveStockRequest(order_id="o-1", lines=[pb.StockLine(product_id="p", quantity=1)])
    status, _, _ = await grpc_web(client, "ReserveStock", req, pb.ReserveStockResponse)
    assert status == Status.PERMISSION_DENIED.value
    as_json = await client.post(f"{SVC}/ReserveStock", json={"order_id": "o-1"})
    assert as_json.status_code == 404


async def test_internal_method_reaches_the_service_on_the_internal_listener(gateway) -> None:
    channel = Channel("127.0.0.1", 8082)
    try:
        with pytest.raises(GRPCError) as err:
            # As order, the caller the schema names (Envoy's internal listener lets it by).
            # No lines: the service itself rejects it, which proves Envoy routed it there.
            await ProductServiceStub(channel).ReserveStock(
                pb.ReserveStockRequest(order_id="o-1"), metadata=service_bearer("order"), timeout=5
            )
    finally:
        channel.close()
    assert err.value.status is Status.INVALID_ARGUMENT, err.value
    assert "not callable from the edge" not in (err.value.message or "")


async def _pipelined(gateway: str, source: str, n: int) -> list[int]:
    """`n` pipelined GETs on one connection from `source`: as fast as NGINX can take them,
    whatever the speed of a Python HTTP client on a busy machine. Returns the statuses."""
    url = urllib.parse.urlsplit(gateway)
    reader, writer = await asyncio.open_connection(url.hostname, url.port, local_addr=(source, 0))
    req = b"GET /api/v1/no-such-path HTTP/1.1\r\nHost: gw\r\n\r\n"
    last = b"GET /api/v1/no-such-path HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    writer.write(req * (n - 1) + last)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(-1), 30)
    writer.close()
    # Bodies end without a newline, so a status line may follow one directly.
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


async def test_rate_limit_answers_429_per_client_ip(gateway) -> None:
    # From another loopback address: its own (fresh) bucket, so other tests on 127.0.0.1
    # are not throttled and a rerun does not meet the previous run's bucket.
    source = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
    batches = await asyncio.gather(*(_pipelined(gateway, source, 400) for _ in range(2)))
    statuses = [code for batch in batches for code in batch]
    assert len(statuses) == 800
    assert set(statuses) <= {404, 429}
    assert statuses.count(429) > 0, "burst 200 + 100 r/s cannot pass 800 requests at once"
    assert statuses.count(404) >= 200, "the burst itself passes"
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as other:
        assert (await other.get("/api/v1/no-such-path")).status_code == 404


async def test_body_over_the_limit_is_413(client) -> None:
    resp = await client.post(
        "/api/v1/products",
        content=b"x" * (2 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 413


async def test_security_headers_static_and_api(client) -> None:
    for path in ("/", "/api/v1/products?page_size=1", "/api/docs"):
        resp = await client.get(path)
        assert resp.status_code == 200, path
        csp = resp.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["referrer-policy"]
        assert "strict-transport-security" not in resp.headers, "HSTS only in prod (TLS)"


async def test_openapi_and_docs_are_served(client) -> None:
    spec = await client.get("/api/openapi.json", headers={"accept-encoding": "gzip"})
    assert spec.status_code == 200
    assert spec.headers.get("content-encoding") == "gzip"
    doc = spec.json()
    assert doc["openapi"].startswith("3.")
    assert "/api/v1/products/{id}" in doc["paths"]
    docs = await client.get("/api/docs")
    assert docs.headers["content-type"].startswith("text/html")
    assert "ListProducts" in docs.text and "<script" not in docs.text


async def test_access_log_is_json(client) -> None:
    marker = f"/api/v1/products?page_size=1&marker={time.time_ns()}"
    assert (await client.get(marker)).status_code == 200
    log = state_dir() / "nginx" / "logs" / "access.log"
    deadline = time.monotonic() + 5  # buffered, flushed every second
    while time.monotonic() < deadline:
        lines = [x for x in log.read_text().splitlines() if "marker=" in x] if log.exists() else []
        hits = [json.loads(x) for x in lines if marker.split("marker=")[1] in x]
        if hits:
            assert hits[-1]["status"] == 200 and hits[-1]["method"] == "GET"
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"no JSON access log line for {marker} in {log}")


async def test_jwks_is_proxied_to_the_auth_service(stack, client) -> None:
    stack.require("auth")
    resp = await client.get("/.well-known/jwks.json")
    assert resp.status_code == 200, resp.text
    assert resp.json()["keys"], "the auth service publishes at least one key"


# ------------------------------------------------------------------ CORS at the Envoy edge


async def test_cors_preflight_allows_local_origins_only(stack) -> None:
    """A browser app on another local port may call the edge (preflight answered with the
    headers gRPC-Web needs, grpc-status exposed); a foreign origin gets no CORS grant."""
    stack.require("envoy", "product")
    url = f"{stack.envoy_url}/shop.product.v1.ProductService/ListProducts"
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-grpc-web,authorization,traceparent",
    }
    async with httpx.AsyncClient(timeout=10) as c:
        ok = await c.options(url, headers={"Origin": "http://localhost:5173", **ask})
        foreign = await c.options(url, headers={"Origin": "https://evil.example", **ask})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://localhost:5173"
    allowed = ok.headers["access-control-allow-headers"].split(",")
    assert {"x-grpc-web", "authorization", "traceparent"} <= set(allowed)
    assert "grpc-status" in ok.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in foreign.headers
