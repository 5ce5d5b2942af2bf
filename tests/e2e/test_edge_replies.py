"""Every reply the edge makes itself is in the caller's protocol: google.rpc.Status JSON for
REST, Connect's error JSON for Connect, grpc-status/grpc-message for gRPC-Web, each with the
matching HTTP status and a message that says what to do (mesh/edge_errors.py).

The kinds the running stack can show are tried through its NGINX (stack.nginx_url): the
transcoder's 400s, jwt_authn's 401, RBAC's 403, the 404s, Connect's 405, NGINX's 413 and
429. The kinds that need a broken or slow upstream (Envoy's 429, 503 and 504, NGINX's 502
and 504) are tried on a private Envoy and NGINX rendered by the same generator on spare
ports, in front of a stand-in ProductService that can be slow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from google.rpc import code_pb2
from grpclib.health.service import Health
from grpclib.server import Server

from mesh import envoy
from mesh.api import load
from mesh.generate import DESCRIPTOR, OUT
from mesh.testing import CountingProduct, PrivateEnvoy, PrivateNginx, free_port
from tests.e2e.edge_clients import (
    CONNECT_JSON,
    EMPTY_FRAME,
    GRPC_WEB,
    assert_connect_error,
    assert_grpc_web_error,
    assert_rest_error,
    bearer,
    pipelined,
    private_loopback,
    register_and_login,
)

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

PRODUCT = "/api/shop.product.v1.ProductService"
ORDER = "/api/shop.order.v1.OrderService"


@pytest.fixture(scope="module")
def gw(stack) -> Iterator[httpx.Client]:
    stack.require("nginx", "auth", "user", "product", "order")
    with httpx.Client(base_url=stack.nginx_url, timeout=15) as client:
        yield client


@pytest.fixture(scope="module")
def shopper(gw: httpx.Client) -> dict:
    return register_and_login(gw)


# ------------------------------------------------------------------ 400: the transcoder


def test_a_bad_query_value_is_400_naming_the_field(gw: httpx.Client) -> None:
    r = gw.get("/api/v1/products", params={"page_size": "abc"})
    assert_rest_error(r, 400, code_pb2.INVALID_ARGUMENT, "page_size", '"abc"', "openapi.json")


def test_a_body_that_is_not_an_object_is_400(gw: httpx.Client) -> None:
    r = gw.post("/api/v1/users", content=b"[null]", headers={"content-type": "application/json"})
    assert_rest_error(r, 400, code_pb2.INVALID_ARGUMENT, "invalid request")
    r = gw.post(
        "/api/v1/users", content=b'{"email": "x"', headers={"content-type": "application/json"}
    )
    assert_rest_error(r, 400, code_pb2.INVALID_ARGUMENT, "invalid request")


def test_bad_connect_json_is_invalid_argument(gw: httpx.Client) -> None:
    r = gw.post(f"{PRODUCT}/GetProduct", content=b"[null]", headers=CONNECT_JSON)
    assert_connect_error(r, 400, code_pb2.INVALID_ARGUMENT, "invalid request")


# ------------------------------------------------------------------ 401: jwt_authn


def test_no_token_is_401_in_every_protocol(gw: httpx.Client) -> None:
    r = gw.get("/api/v1/orders", params={"user_id": "u-demo"})
    assert_rest_error(r, 401, code_pb2.UNAUTHENTICATED, "Jwt is missing", "Authorization: Bearer")
    r = gw.post(f"{ORDER}/ListOrders", content=b"{}", headers=CONNECT_JSON)
    assert_connect_error(r, 401, code_pb2.UNAUTHENTICATED, "Jwt is missing", "auth/login")
    r = gw.post(f"{ORDER}/ListOrders", content=EMPTY_FRAME, headers=GRPC_WEB)
    assert r.status_code == 401
    assert_grpc_web_error(r, code_pb2.UNAUTHENTICATED, "Jwt is missing")


def test_a_malformed_token_is_401_saying_why(gw: httpx.Client) -> None:
    r = gw.get("/api/v1/orders", params={"user_id": "u-1"}, headers=bearer("not-a-jwt"))
    assert_rest_error(r, 401, code_pb2.UNAUTHENTICATED, "Header.Payload.Signature")


# ------------------------------------------------------------------ 403: RBAC, internal


def test_a_shopper_on_an_admin_method_is_403(gw: httpx.Client, shopper: dict) -> None:
    auth = bearer(shopper["access_token"])
    r = gw.post("/api/v1/products", json={"name": "x"}, headers=auth)
    assert_rest_error(r, 403, code_pb2.PERMISSION_DENIED, "admin role")
    r = gw.post(f"{PRODUCT}/CreateProduct", content=b"{}", headers={**CONNECT_JSON, **auth})
    assert_connect_error(r, 403, code_pb2.PERMISSION_DENIED, "admin role")
    r = gw.post(f"{PRODUCT}/CreateProduct", content=EMPTY_FRAME, headers={**GRPC_WEB, **auth})
    assert_grpc_web_error(r, code_pb2.PERMISSION_DENIED, "access denied")


def test_internal_methods_are_refused_in_every_protocol(gw: httpx.Client) -> None:
    r = gw.post(f"{PRODUCT}/ReserveStock", content=b"{}", headers=CONNECT_JSON)
    assert_connect_error(r, 403, code_pb2.PERMISSION_DENIED, "not callable from the edge")
    proto = {"content-type": "application/proto", "connect-protocol-version": "1"}
    r = gw.post(f"{PRODUCT}/ReserveStock", content=b"", headers=proto)
    assert_connect_error(r, 403, code_pb2.PERMISSION_DENIED, "not callable from the edge")
    r = gw.post(f"{PRODUCT}/ReserveStock", content=EMPTY_FRAME, headers=GRPC_WEB)
    assert_grpc_web_error(r, code_pb2.PERMISSION_DENIED, "not callable from the edge")
    r = gw.post(f"{PRODUCT}/ReserveStock", json={"order_id": "o-1"})
    assert_rest_error(r, 404, code_pb2.NOT_FOUND, "/api/docs")


# ------------------------------------------------------------------ 404 and 405


def test_unknown_paths_are_404_in_every_protocol(gw: httpx.Client) -> None:
    assert_rest_error(gw.get("/api/v1/no-such-thing"), 404, code_pb2.NOT_FOUND, "no such API path")
    r = gw.post(f"{PRODUCT}/NoSuchMethod", content=b"{}", headers=CONNECT_JSON)
    assert_connect_error(r, 404, code_pb2.UNIMPLEMENTED, "no such RPC method")
    r = gw.post(f"{PRODUCT}/NoSuchMethod", content=EMPTY_FRAME, headers=GRPC_WEB)
    assert_grpc_web_error(r, code_pb2.UNIMPLEMENTED, "no such API path")


def test_connect_get_on_a_method_that_changes_state_is_405(gw: httpx.Client) -> None:
    # A GET could put a password in a URL (and in access logs): reads only.
    r = gw.get(
        "/api/shop.auth.v1.AuthService/Login",
        params={"connect": "v1", "encoding": "json", "message": "{}"},
    )
    assert_connect_error(r, 405, code_pb2.UNIMPLEMENTED, "POST")
    assert r.headers["allow"] == "POST"


# ------------------------------------------------------------------ NGINX: 413 and 429


BIG = b"x" * (2 * 1024 * 1024)


def test_a_body_over_the_limit_is_413_in_every_protocol(gw: httpx.Client) -> None:
    json_ct = {"content-type": "application/json"}
    r = gw.post("/api/v1/products", content=BIG, headers=json_ct)
    assert_rest_error(r, 413, code_pb2.RESOURCE_EXHAUSTED, "1 MiB")
    r = gw.post(f"{PRODUCT}/GetProduct", content=BIG, headers=CONNECT_JSON)
    assert_connect_error(r, 413, code_pb2.RESOURCE_EXHAUSTED, "1 MiB")
    r = gw.post(f"{PRODUCT}/GetProduct", content=BIG, headers=GRPC_WEB)
    assert r.status_code == 413
    assert_grpc_web_error(r, code_pb2.RESOURCE_EXHAUSTED, "1 MiB")


def _raw(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gw", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize(
    ("protocol", "request_bytes"),
    [
        ("rest", _raw("GET", "/api/v1/no-such-path", {})),
        ("connect", _raw("POST", f"{PRODUCT}/NoSuchMethod", CONNECT_JSON, b"{}")),
        ("grpc-web", _raw("POST", f"{PRODUCT}/NoSuchMethod", GRPC_WEB, EMPTY_FRAME)),
    ],
    ids=["rest", "connect", "grpc-web"],
)
def test_nginx_rate_limit_is_429_in_every_protocol(gw, protocol, request_bytes) -> None:
    # From a private loopback address: its own bucket (burst 200, 100/s), nobody else's.
    # Several connections at once: on one, NGINX takes the next pipelined request only
    # after answering the last, which on a busy machine can be slower than 100/s.
    source = private_loopback()
    with ThreadPoolExecutor(4) as pool:
        batches = pool.map(
            lambda _: pipelined(str(gw.base_url), source, request_bytes, 150), range(4)
        )
        replies = [r for batch in batches for r in batch]
    limited = [(h, b) for status, h, b in replies if status == 429]
    assert len(replies) == 600 and limited, "burst 200 + 100 r/s cannot pass 600 at once"
    headers, body = limited[0]
    fake = httpx.Response(429, headers=headers, content=body)
    if protocol == "rest":
        assert_rest_error(fake, 429, code_pb2.RESOURCE_EXHAUSTED, "retry")
    elif protocol == "connect":
        assert_connect_error(fake, 429, code_pb2.RESOURCE_EXHAUSTED, "retry")
    else:
        assert_grpc_web_error(fake, code_pb2.RESOURCE_EXHAUSTED, "retry")


# ------------------------------------------------------------------ a private edge


class PrivateEdge:
    """A stand-in ProductService (slow on demand), a private Envoy in front of it (user
    service at a closed port) and a private NGINX in front of that, all from the generator."""

    def __init__(self, workdir: Path, **envoy_options: object) -> None:
        self.product = CountingProduct()
        self.product_port = free_port()
        self.server = Server([self.product, Health()])
        self.edge, self.admin = free_port(), free_port()
        opt = envoy.EnvoyOptions(
            edge_port=self.edge,
            internal_port=free_port(),
            admin_port=self.admin,
            descriptor_path=str(OUT / "envoy" / "descriptor.binpb"),
            openapi_path=str(OUT / "openapi" / "openapi.json"),
            docs_path=str(OUT / "openapi" / "docs.html"),
            endpoints={
                "product": [("127.0.0.1", self.product_port)],
                "user": [("127.0.0.1", free_port())],
            },
            access_log=False,
            **envoy_options,  # type: ignore[arg-type]
        )
        self.envoy = PrivateEnvoy(envoy.build(load(DESCRIPTOR), opt), workdir / "envoy", self.admin)
        self.nginx = PrivateNginx(workdir / "nginx", self.edge, read_timeout="1s")

    @property
    def envoy_url(self) -> str:
        return f"http://127.0.0.1:{self.edge}"


@pytest.fixture
async def private_edge(tmp_path):
    started: list[PrivateEdge] = []

    async def make(**envoy_options: object) -> PrivateEdge:
        edge = PrivateEdge(tmp_path / f"edge{len(started)}", **envoy_options)
        await edge.server.start("127.0.0.1", edge.product_port)
        await asyncio.to_thread(edge.envoy.__enter__)
        await asyncio.to_thread(edge.nginx.__enter__)
        started.append(edge)
        return edge

    yield make
    for edge in started:
        await asyncio.to_thread(edge.nginx.__exit__)
        await asyncio.to_thread(edge.envoy.__exit__)
        edge.server.close()
        await edge.server.wait_closed()


async def _three(
    url: str, rest: tuple[str, str, dict | None], rpc: str, message: bytes
) -> tuple[httpx.Response, ...]:
    """The same call as REST (`rest` = verb, path, JSON body), Connect JSON and gRPC-Web."""
    verb, path, body = rest
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        return (
            await c.request(verb, path, json=body),
            await c.post(rpc, content=message, headers=CONNECT_JSON),
            await c.post(rpc, content=EMPTY_FRAME, headers=GRPC_WEB),
        )


GET_PRODUCT = (("GET", "/api/v1/products/p-1", None), f"{PRODUCT}/GetProduct", b'{"id":"p-1"}')
REGISTER = {"email": "a@example.com", "password": "12345678", "display_name": "A"}
REGISTER_USER = (
    ("POST", "/api/v1/users", REGISTER),
    "/api/shop.user.v1.UserService/RegisterUser",
    b'{"email":"a@example.com","password":"12345678","displayName":"A"}',
)


async def test_envoy_rate_limit_is_429_in_every_protocol(private_edge) -> None:
    edge = await private_edge(rate_limit_rps=1, rate_limit_burst=1)
    async with httpx.AsyncClient(base_url=edge.envoy_url, timeout=30) as c:
        await c.get("/api/v1/products/p-1")  # spends the one token
    rest, connect, grpc_web = await _three(edge.envoy_url, *GET_PRODUCT)
    assert rest.headers["x-rate-limited"] == "envoy"
    assert_rest_error(rest, 429, code_pb2.RESOURCE_EXHAUSTED, "too many requests", "retry")
    assert_connect_error(connect, 429, code_pb2.RESOURCE_EXHAUSTED, "too many requests")
    # gRPC-Web: Envoy's gRPC-Web filter maps the HTTP status as gRPC does (429 -> UNAVAILABLE).
    assert grpc_web.status_code == 429
    assert_grpc_web_error(grpc_web, code_pb2.UNAVAILABLE, "local_rate_limited")


async def test_an_unreachable_service_is_503_in_every_protocol(private_edge) -> None:
    edge = await private_edge()  # the user service's endpoint is a closed port
    rest, connect, grpc_web = await _three(edge.envoy_url, *REGISTER_USER)
    assert_rest_error(rest, 503, code_pb2.UNAVAILABLE, "service unavailable", "retry")
    assert_connect_error(connect, 503, code_pb2.UNAVAILABLE, "service unavailable", "retry")
    assert grpc_web.status_code == 503
    assert_grpc_web_error(grpc_web, code_pb2.UNAVAILABLE, "upstream connect error")


async def test_a_slow_service_is_504_in_every_protocol(private_edge) -> None:
    edge = await private_edge()
    edge.product.delay["GetProduct"] = 5  # GetProduct's deadline is 2 s
    rest, connect, grpc_web = await _three(edge.envoy_url, *GET_PRODUCT)
    assert_rest_error(rest, 504, code_pb2.DEADLINE_EXCEEDED, "deadline", "retry")
    assert_connect_error(connect, 504, code_pb2.DEADLINE_EXCEEDED, "deadline")
    assert grpc_web.status_code == 504
    assert_grpc_web_error(grpc_web, code_pb2.UNAVAILABLE, "upstream request timeout")


async def test_nginx_without_envoy_is_502_in_every_protocol(private_edge) -> None:
    edge = await private_edge()
    await asyncio.to_thread(edge.envoy.__exit__)
    rest, connect, grpc_web = await _three(edge.nginx.url, *GET_PRODUCT)
    assert_rest_error(rest, 502, code_pb2.UNAVAILABLE, "not reachable", "retry")
    assert_connect_error(connect, 502, code_pb2.UNAVAILABLE, "not reachable")
    assert grpc_web.status_code == 502 and grpc_web.content == b""
    assert_grpc_web_error(grpc_web, code_pb2.UNAVAILABLE, "not reachable")


async def test_nginx_waiting_too_long_is_504_in_every_protocol(private_edge) -> None:
    edge = await private_edge()  # NGINX gives up after 1 s, before Envoy's 2 s deadline
    edge.product.delay["GetProduct"] = 5
    rest, connect, grpc_web = await _three(edge.nginx.url, *GET_PRODUCT)
    assert rest.headers["server"] == "nginx"
    assert_rest_error(rest, 504, code_pb2.DEADLINE_EXCEEDED, "did not answer in time")
    assert_connect_error(connect, 504, code_pb2.DEADLINE_EXCEEDED, "did not answer in time")
    assert grpc_web.status_code == 504
    assert_grpc_web_error(grpc_web, code_pb2.DEADLINE_EXCEEDED, "did not answer in time")
