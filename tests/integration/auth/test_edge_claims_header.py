"""The claims header at the edge, observed from the upstream side: a private Envoy built by
the same generator as mesh/out (only ports and endpoints differ) in front of a recording
stand-in for the auth, user and product services, so what each service would receive is
seen, not inferred from a status code.

- A public method: the client's forged `x-shop-jwt-payload` never reaches the service.
- A user method with a valid customer token plus forged admin claims for another user: the
  service receives only the claims Envoy verified (the caller's own sub and roles).
- An admin method with that customer token plus forged admin claims: refused at the edge
  (403 / PERMISSION_DENIED), the service is never called; an admin token gets through.

Two layers keep the client's copy out: the header_mutation strip first in the chain
(mesh/jwt.py; tests/unit/mesh/test_edge_auth.py checks it is there and first) and Envoy's
jwt_authn, which also drops its forward_payload_header from every request. Removing either
alone keeps these tests green; removing both (or renaming the payload header) fails all
three, which is how they were checked.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpclib.client import Channel

from mesh.stubs import Stub
from mesh.testing import private_gateway
from services.runtime.auth import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    PAYLOAD_HEADER,
    b64url,
    b64url_decode,
    okp_jwk,
    sign,
)
from shop.auth.v1 import auth_pb2 as apb
from shop.product.v1 import product_grpc
from shop.product.v1 import product_pb2 as ppb
from shop.user.v1 import user_pb2 as upb

KID = "edge-test-key"
FORGED = b64url(json.dumps({"iss": DEFAULT_ISSUER, "sub": "u-victim", "roles": ["admin"]}).encode())


@dataclass
class Recorder:
    """Stands in for the auth (GetJwks), user (GetUser) and product (ListProducts,
    CreateProduct) services, stubs built from their descriptors (mesh/stubs.py); records
    the metadata of every call they serve."""

    key: Ed25519PrivateKey
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def servables(self) -> list[Stub]:
        def note(path: str, metadata: dict[str, str]) -> None:
            self.calls.append((path, metadata))

        jwks = apb.GetJwksResponse(keys=[apb.Jwk(**okp_jwk(self.key.public_key(), KID))])
        return [
            Stub(apb.DESCRIPTOR.services_by_name["AuthService"], {"GetJwks": jwks}, on_call=note),
            Stub(
                upb.DESCRIPTOR.services_by_name["UserService"],
                {"GetUser": upb.GetUserResponse(user=upb.User(id="u-alice"))},
                on_call=note,
            ),
            Stub(
                ppb.DESCRIPTOR.services_by_name["ProductService"],
                {
                    "ListProducts": ppb.ListProductsResponse(),
                    "CreateProduct": ppb.CreateProductResponse(product=ppb.Product(id="p-1")),
                },
                on_call=note,
            ),
        ]

    def received(self, path: str) -> list[dict[str, str]]:
        return [md for p, md in self.calls if p == path]


@dataclass
class Edge:
    url: str
    port: int
    recorder: Recorder

    def token(self, sub: str, roles: list[str]) -> str:
        now = int(time.time())
        claims = {
            "iss": DEFAULT_ISSUER,
            "aud": DEFAULT_AUDIENCE,
            "sub": sub,
            "roles": roles,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        return sign(claims, self.recorder.key, KID)


@pytest.fixture
async def edge(tmp_path) -> AsyncIterator[Edge]:
    recorder = Recorder(Ed25519PrivateKey.generate())
    async with private_gateway(recorder.servables(), tmp_path / "envoy") as (port, _, _):
        e = Edge(f"http://127.0.0.1:{port}", port, recorder)
        await _wait_for_jwks(e)
        yield e


async def _wait_for_jwks(e: Edge) -> None:
    """Envoy fetches the JWKS from its own edge (-> GetJwks) once the upstream is healthy."""
    headers = {"authorization": f"Bearer {e.token('u-alice', ['customer'])}"}
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=e.url, timeout=5) as c:
        while True:
            r = await c.get("/api/v1/users/u-alice", headers=headers)
            if r.status_code == 200 or time.monotonic() > deadline:
                assert r.status_code == 200, r.text
                break
            await asyncio.sleep(0.2)
    e.recorder.calls.clear()


def _claims(header: str) -> dict:
    return json.loads(b64url_decode(header))


async def test_forged_claims_on_a_public_method_never_reach_the_service(edge: Edge) -> None:
    path = "/shop.product.v1.ProductService/ListProducts"
    async with httpx.AsyncClient(base_url=edge.url, timeout=5) as c:
        r = await c.get("/api/v1/products", headers={PAYLOAD_HEADER: FORGED})
        assert r.status_code == 200, r.text
    channel = Channel("127.0.0.1", edge.port)  # native gRPC on the same listener
    try:
        stub = product_grpc.ProductServiceStub(channel)
        await stub.ListProducts(ppb.ListProductsRequest(), metadata={PAYLOAD_HEADER: FORGED})
    finally:
        channel.close()
    seen = edge.recorder.received(path)
    assert len(seen) == 2, edge.recorder.calls
    for md in seen:
        assert PAYLOAD_HEADER not in md, md


async def test_forged_admin_claims_beside_a_user_token_are_replaced_by_the_verified_ones(
    edge: Edge,
) -> None:
    headers = {
        "authorization": f"Bearer {edge.token('u-alice', ['customer'])}",
        PAYLOAD_HEADER: FORGED,
    }
    async with httpx.AsyncClient(base_url=edge.url, timeout=5) as c:
        r = await c.get("/api/v1/users/u-victim", headers=headers)
    assert r.status_code == 200, r.text  # the edge passes it: ownership is the service's
    (md,) = edge.recorder.received("/shop.user.v1.UserService/GetUser")
    claims = _claims(md[PAYLOAD_HEADER])  # one value, Envoy's own
    assert claims["sub"] == "u-alice" and claims["roles"] == ["customer"], claims
    assert claims["aud"] == DEFAULT_AUDIENCE


async def test_forged_admin_claims_do_not_open_an_admin_method(edge: Edge) -> None:
    path = "/shop.product.v1.ProductService/CreateProduct"
    customer = {
        "authorization": f"Bearer {edge.token('u-alice', ['customer'])}",
        PAYLOAD_HEADER: FORGED,
    }
    body = {"sku": "EDGE-1", "name": "x", "category": "c"}
    async with httpx.AsyncClient(base_url=edge.url, timeout=5) as c:
        r = await c.post("/api/v1/products", json=body, headers=customer)
        assert r.status_code == 403, r.text
        assert edge.recorder.received(path) == []
        # The control: a token that really has the role gets through.
        admin = {"authorization": f"Bearer {edge.token('u-admin', ['customer', 'admin'])}"}
        r = await c.post("/api/v1/products", json=body, headers=admin)
        assert r.status_code == 200, r.text
    (md,) = edge.recorder.received(path)
    assert _claims(md[PAYLOAD_HEADER])["sub"] == "u-admin"
