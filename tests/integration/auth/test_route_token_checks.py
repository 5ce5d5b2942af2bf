"""The token checks each method route carries (mesh/jwt.py, "per route"), through a real
Envoy: a private one built by the same generator as mesh/out, in front of recording stubs
of the auth, user and product services (mesh/stubs.py).

Public reads run neither jwt_authn nor RBAC; everything else must still be checked as
before, on both listeners and for every way in:

- edge: a user method without a token is 401 over REST (the route Envoy finds after the
  transcoder has rewritten the path) and UNAUTHENTICATED over gRPC; a public method passes
  with no token and with a garbage one (tokens are not read there);
- internal: a protected method needs a verified service token whose service the method's
  callers name (ReserveStock: order), a public one needs nothing.

The filters' own counters show the saving: a public gRPC read moves neither RBAC's nor
jwt_authn's, a protected call moves them. (A REST call is first routed on its /api/v1
path, the catch-all, and Envoy keeps the filters that route enables, so REST reads still
run the listener-wide checks, which admit them: the same answer, no saving.)

Checked against broken configs: disabling jwt_authn on every edge method route fails the
gRPC 401 check; giving ReserveStock's route a policy that admits anyone fails the
notification check.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpclib import GRPCError, Status
from grpclib.client import Channel

from mesh.stubs import Stub
from mesh.testing import PrivateEnvoy, private_gateway
from services.runtime.auth import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    SERVICE_AUDIENCE,
    okp_jwk,
    service_issuer,
    sign,
)
from shop.auth.v1 import auth_pb2 as apb
from shop.product.v1 import product_grpc
from shop.product.v1 import product_pb2 as ppb
from shop.user.v1 import user_grpc
from shop.user.v1 import user_pb2 as upb

KID = "route-test-key"
RESERVE = "/shop.product.v1.ProductService/ReserveStock"
GET_PRODUCT = "/shop.product.v1.ProductService/GetProduct"


@dataclass
class Mesh:
    edge: int
    internal: int
    key: Ed25519PrivateKey
    calls: list[str] = field(default_factory=list)
    proxy: PrivateEnvoy | None = None

    def checks(self) -> dict[str, int]:
        """RBAC and jwt_authn decisions so far, per listener."""
        assert self.proxy is not None
        return {
            k: v
            for k, v in self.proxy.stats().items()
            if ".rbac." in k or (".jwt_authn." in k and k.endswith(("allowed", "denied")))
        }

    def user_token(self, sub: str = "u-alice") -> str:
        now = int(time.time())
        claims = {
            **{"iss": DEFAULT_ISSUER, "aud": DEFAULT_AUDIENCE, "sub": sub, "roles": ["customer"]},
            **{"iat": now, "exp": now + 300, "jti": uuid.uuid4().hex},
        }
        return sign(claims, self.key, KID)

    def service_token(self, name: str) -> str:
        now = int(time.time())
        claims = {
            **{"iss": service_issuer(name), "aud": SERVICE_AUDIENCE, "sub": name},
            **{"iat": now, "exp": now + 300, "jti": uuid.uuid4().hex},
        }
        return sign(claims, self.key, KID)


def _stubs(key: Ed25519PrivateKey, calls: list[str]) -> list[Stub]:
    def note(path: str, metadata: dict[str, str]) -> None:
        calls.append(path)

    jwk = apb.Jwk(**okp_jwk(key.public_key(), KID))
    # One key for the user issuer and every service issuer: each provider still fetches
    # its own JWKS path, so a token is accepted under its issuer's provider only.
    return [
        Stub(
            apb.DESCRIPTOR.services_by_name["AuthService"],
            {
                "GetJwks": apb.GetJwksResponse(keys=[jwk]),
                "GetServiceJwks": apb.GetServiceJwksResponse(keys=[jwk]),
            },
            on_call=note,
        ),
        Stub(
            upb.DESCRIPTOR.services_by_name["UserService"],
            {"GetUser": upb.GetUserResponse(user=upb.User(id="u-alice"))},
            on_call=note,
        ),
        Stub(
            ppb.DESCRIPTOR.services_by_name["ProductService"],
            {
                "GetProduct": ppb.GetProductResponse(product=ppb.Product(id="p-1")),
                "ReserveStock": ppb.ReserveStockResponse(),
            },
            on_call=note,
        ),
    ]


@pytest.fixture
async def mesh(tmp_path) -> AsyncIterator[Mesh]:
    key = Ed25519PrivateKey.generate()
    calls: list[str] = []
    async with private_gateway(_stubs(key, calls), tmp_path / "envoy") as (edge, internal, proxy):
        m = Mesh(edge, internal, key, calls, proxy)
        await _until_keys_fetched(m)
        m.calls.clear()
        yield m


async def _until_keys_fetched(m: Mesh) -> None:
    """Envoy fetches the JWKS (user and order's) from its own edge once upstreams are up."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.edge}", timeout=5) as c:
        while True:
            r = await c.get(
                "/api/v1/users/u-alice", headers={"authorization": f"Bearer {m.user_token()}"}
            )
            ok = r.status_code == 200 and await _reserve(m, "order") is None
            if ok or time.monotonic() > deadline:
                assert r.status_code == 200, r.text
                assert await _reserve(m, "order") is None
                return
            await asyncio.sleep(0.2)


async def _reserve(m: Mesh, caller: str | None) -> Status | None:
    """ReserveStock on the internal listener with `caller`'s service token: None if served."""
    channel = Channel("127.0.0.1", m.internal)
    md = {"authorization": f"Bearer {m.service_token(caller)}"} if caller else None
    try:
        stub = product_grpc.ProductServiceStub(channel)
        await stub.ReserveStock(ppb.ReserveStockRequest(order_id="o-1"), metadata=md, timeout=5)
        return None
    except GRPCError as exc:
        return exc.status
    finally:
        channel.close()


async def test_edge_user_method_without_a_token_is_refused_on_every_path(mesh: Mesh) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{mesh.edge}", timeout=5) as c:
        r = await c.get("/api/v1/users/u-alice")
        assert r.status_code == 401, r.text
        r = await c.get("/api/v1/users/u-alice", headers={"authorization": "Bearer not.a.token"})
        assert r.status_code == 401, r.text
    channel = Channel("127.0.0.1", mesh.edge)
    try:
        with pytest.raises(GRPCError) as err:
            await user_grpc.UserServiceStub(channel).GetUser(
                upb.GetUserRequest(id="u-alice"), timeout=5
            )
        assert err.value.status is Status.UNAUTHENTICATED
    finally:
        channel.close()
    assert "/shop.user.v1.UserService/GetUser" not in mesh.calls


async def test_edge_public_read_needs_no_token_and_ignores_a_bad_one(mesh: Mesh) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{mesh.edge}", timeout=5) as c:
        r = await c.get("/api/v1/products/p-1")
        assert r.status_code == 200 and r.json()["product"]["id"] == "p-1", r.text
        r = await c.get("/api/v1/products/p-1", headers={"authorization": "Bearer not.a.token"})
        assert r.status_code == 200, r.text
    assert mesh.calls.count(GET_PRODUCT) == 2


async def test_internal_protected_method_admits_only_its_callers(mesh: Mesh) -> None:
    assert await _reserve(mesh, "order") is None
    assert await _reserve(mesh, "notification") is Status.PERMISSION_DENIED
    assert await _reserve(mesh, None) is Status.UNAUTHENTICATED
    assert mesh.calls.count(RESERVE) == 1


async def test_internal_public_read_needs_no_token(mesh: Mesh) -> None:
    channel = Channel("127.0.0.1", mesh.internal)
    try:
        stub = product_grpc.ProductServiceStub(channel)
        reply = await stub.GetProduct(ppb.GetProductRequest(id="p-1"), timeout=5)
        assert reply.product.id == "p-1"
    finally:
        channel.close()
    assert mesh.calls == [GET_PRODUCT]


async def test_public_grpc_reads_run_no_token_filter(mesh: Mesh) -> None:
    def moved(before: dict[str, int]) -> dict[str, int]:
        after = mesh.checks()
        return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}

    before = mesh.checks()
    for port in (mesh.edge, mesh.internal):
        channel = Channel("127.0.0.1", port)
        try:
            stub = product_grpc.ProductServiceStub(channel)
            await stub.GetProduct(ppb.GetProductRequest(id="p-1"), timeout=5)
        finally:
            channel.close()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{mesh.edge}", timeout=5) as c:
        r = await c.post(
            "/api/shop.product.v1.ProductService/GetProduct",
            content=b"\x00\x00\x00\x00\x05" + ppb.GetProductRequest(id="p-1").SerializeToString(),
            headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
        )
        assert r.status_code == 200 and r.headers.get("grpc-status", "0") == "0", r.headers
    assert mesh.calls.count(GET_PRODUCT) == 3
    assert moved(before) == {}
    # The control: a protected call is decided by both filters.
    before = mesh.checks()
    assert await _reserve(mesh, "order") is None
    assert any(".rbac." in k for k in moved(before)), moved(before)
