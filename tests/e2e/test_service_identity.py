"""Least privilege between services, on the running stack: each service calls with its own
identity, and a method admits only the services its schema policy names as callers, both at
the service itself (the runtime) and through Envoy's internal listener (jwt_authn + RBAC).

ReserveStock names order alone; UpdateProduct (admin) names no service. Notification is a
real service with a real key, so its refusals are about authorization (PERMISSION_DENIED);
a key no service holds, or notification's key claiming to be order, is no identity at all
(UNAUTHENTICATED). An order placed through the gateway still reaches its email, every
service-to-service hop on the way authenticated as its own service.
"""

from __future__ import annotations

import email
import email.policy
import time
import uuid

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from services.runtime.auth import SERVICE_AUDIENCE, ServiceIdentity, service_issuer, sign
from shop.common.v1 import common_pb2
from shop.product.v1 import product_pb2 as ppb
from shop.product.v1.product_grpc import ProductServiceStub
from shop.topology import SERVICES
from stack.callers import admin_bearer, service_identity
from stack.gateway import envoy_admin_port, envoy_internal_port
from stack.model import state_dir
from stack.testing import StackHandle

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

PRODUCT_PORT = SERVICES["product"].port


@pytest.fixture(scope="module")
def up(stack: StackHandle) -> StackHandle:
    return stack.require("product", "order", "user", "auth", "notification", "smtp-sink", "nginx")


class Products:
    """ProductService called directly at the service, or through Envoy's internal listener
    (what order does in the stack: ORDER_PRODUCT_ADDR=127.0.0.1:8082). Through Envoy, a
    refusal must be Envoy's own (its jwt_authn or RBAC counter moves), not only the
    service's behind it."""

    def __init__(self, via: str) -> None:
        self.via = via
        port = PRODUCT_PORT if via == "service" else envoy_internal_port()
        self.channel = Channel("127.0.0.1", port)
        self.stub = ProductServiceStub(self.channel)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.stub, name)

    async def refused(self, call) -> Status:  # type: ignore[no-untyped-def]
        before = _envoy_denials() if self.via == "envoy-internal" else {}
        status = await _status(call)
        if self.via == "envoy-internal" and status is not Status.OK:
            after = _envoy_denials()
            who = "rbac" if status is Status.PERMISSION_DENIED else "jwt_authn"
            assert after[who] > before[who], (status, before, after)
        return status


def _envoy_denials() -> dict[str, int]:
    url = f"http://127.0.0.1:{envoy_admin_port()}/stats?format=json&filter=^http\\.internal\\."
    stats = {
        s["name"]: s.get("value", 0)
        for s in httpx.get(url, timeout=5).json()["stats"]
        if "name" in s
    }
    return {
        "rbac": stats["http.internal.rbac.denied"],
        "jwt_authn": stats["http.internal.jwt_authn.denied"],
    }


@pytest.fixture(params=["service", "envoy-internal"])
async def products(request, up) -> Products:
    p = Products(request.param)
    yield p
    p.channel.close()


async def _fresh_product(stock: int = 5) -> ppb.Product:
    channel = Channel("127.0.0.1", PRODUCT_PORT)
    try:
        reply = await ProductServiceStub(channel).CreateProduct(
            ppb.CreateProductRequest(
                sku=f"IDENT-{uuid.uuid4().hex[:8]}".upper(),
                name="Identity probe",
                category="test",
                price=common_pb2.Money(currency_code="USD", units=3),
                stock=stock,
            ),
            metadata=await admin_bearer(),  # an admin user: no service may create products
            timeout=10,
        )
        return reply.product
    finally:
        channel.close()


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _status(call) -> Status:  # type: ignore[no-untyped-def]
    try:
        await call
    except GRPCError as exc:
        return exc.status
    return Status.OK


def _reserve(product: ppb.Product, order_id: str) -> ppb.ReserveStockRequest:
    return ppb.ReserveStockRequest(
        order_id=order_id, lines=[ppb.StockLine(product_id=product.id, quantity=1)]
    )


async def test_order_may_reserve_stock_and_notification_may_not(products) -> None:
    product = await _fresh_product()
    order_id = f"ident-{uuid.uuid4().hex}"
    notification = service_identity("notification").metadata()
    # Notification: a valid identity, but not a caller of ReserveStock or of UpdateProduct.
    assert (
        await products.refused(
            products.ReserveStock(_reserve(product, order_id), metadata=notification, timeout=10)
        )
        is Status.PERMISSION_DENIED
    )
    update = ppb.UpdateProductRequest(id=product.id, name="Renamed by notification")
    assert (
        await products.refused(products.UpdateProduct(update, metadata=notification, timeout=10))
        is Status.PERMISSION_DENIED
    )
    # Order, the one caller ReserveStock names: accepted, and the stock really moves.
    order = service_identity("order").metadata()
    reply = await products.ReserveStock(_reserve(product, order_id), metadata=order, timeout=10)
    assert [line.product_id for line in reply.lines] == [product.id]
    # ...but order is no admin either: UpdateProduct names no service at all.
    assert (
        await products.refused(products.UpdateProduct(update, metadata=order, timeout=10))
        is Status.PERMISSION_DENIED
    )
    released = await products.ReleaseStock(
        ppb.ReleaseStockRequest(order_id=order_id), metadata=order, timeout=10
    )
    assert released.released
    got = await products.GetProduct(ppb.GetProductRequest(id=product.id), timeout=10)
    assert got.product.stock == 5 and got.product.name == "Identity probe"


async def test_a_key_no_service_holds_is_unauthenticated(products) -> None:
    product = await _fresh_product()
    stranger = ServiceIdentity("order", Ed25519PrivateKey.generate())  # order's name, no key
    assert (
        await products.refused(
            products.ReserveStock(
                _reserve(product, f"ident-{uuid.uuid4().hex}"),
                metadata=stranger.metadata(),
                timeout=10,
            )
        )
        is Status.UNAUTHENTICATED
    )
    stranger.kid = service_identity("order").kid  # claiming order's published key id
    assert (
        await products.refused(
            products.ReserveStock(
                _reserve(product, f"ident-{uuid.uuid4().hex}"),
                metadata=stranger.metadata(),
                timeout=10,
            )
        )
        is Status.UNAUTHENTICATED
    )


async def test_notifications_key_cannot_claim_to_be_order(products) -> None:
    via = products.via
    product = await _fresh_product()
    notification = service_identity("notification")
    now = int(time.time())
    base = {"aud": SERVICE_AUDIENCE, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    for claims in (
        {"iss": service_issuer("notification"), "sub": "order"},
        {"iss": service_issuer("order"), "sub": "order"},
    ):
        forged = sign({**base, **claims}, notification.key, notification.kid)
        status = await products.refused(
            products.ReserveStock(
                _reserve(product, f"ident-{uuid.uuid4().hex}"), metadata=_bearer(forged), timeout=10
            )
        )
        # The service holds it to be no valid token at all. Envoy verifies the signature
        # under notification's issuer (its provider is bound to notification's keys) and
        # then refuses it as no caller's principal: 403 where iss says notification.
        refused = {Status.UNAUTHENTICATED}
        if via == "envoy-internal" and claims["iss"] == service_issuer("notification"):
            refused = {Status.PERMISSION_DENIED}
        assert status in refused, (via, claims, status)
    got = await products.GetProduct(ppb.GetProductRequest(id=product.id), timeout=10)
    assert got.product.stock == 5  # nothing was reserved


def _mail_to(address: str, since_ns: int) -> list[email.message.EmailMessage]:
    found = []
    for path in sorted((state_dir() / "mail").glob("*.eml")):
        if int(path.name.split("-", 1)[0]) < since_ns:
            continue
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if address in str(msg["To"]):
            found.append(msg)
    return found


def test_an_order_placed_through_the_gateway_reaches_its_email(up) -> None:
    """Through NGINX -> Envoy -> order, which calls user and product as order (Envoy's
    internal listener), and notification, which reads user and order as notification."""
    since = time.time_ns()
    import asyncio

    product = asyncio.run(_fresh_product(stock=3))
    address = f"ident-{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=up.nginx_url, timeout=20) as gw:
        r = gw.post(
            "/api/v1/users",
            json={"email": address, "password": "correct horse 1", "display_name": "Ident"},
        )
        assert r.status_code == 200, r.text
        r = gw.post("/api/v1/auth/login", json={"email": address, "password": "correct horse 1"})
        assert r.status_code == 200, r.text
        tokens = r.json()["tokens"]
        r = gw.post(
            "/api/v1/orders",
            json={
                "user_id": tokens["user_id"],
                "idempotency_key": uuid.uuid4().hex,
                "lines": [{"product_id": product.id, "quantity": 1}],
                "shipping_address": {
                    "recipient_name": "Ident",
                    "line1": "1 Main St",
                    "city": "Lyon",
                    "postal_code": "69001",
                    "country_code": "FR",
                },
            },
            headers=_bearer(tokens["access_token"]),
        )
        assert r.status_code == 200, r.text
        order = r.json()["order"]
    assert order["status"] == "ORDER_STATUS_CONFIRMED"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        confirmations = [
            m
            for m in _mail_to(address, since)
            if f"Order {order['id']} confirmed" in str(m["Subject"])
        ]
        if confirmations:
            break
        time.sleep(0.5)
    assert len(confirmations) == 1, [str(m["Subject"]) for m in _mail_to(address, since)]
