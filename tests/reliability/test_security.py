"""Security under hostile clients, directly (grpclib) and through the gateway (NGINX ->
Envoy, REST and gRPC-Web):

- every protected method, enumerated from the schema's policy option, refuses a call
  without a token; admin methods refuse a user token; internal methods refuse a user token
  and are not routed at the edge;
- user A's token on user B's orders, profile, addresses and notifications is refused, and
  B's data is unchanged afterwards;
- SQL-injection and NoSQL-operator strings in string fields are data: stored verbatim or
  rejected, never interpreted (a search never widens to unrelated rows; JSON operator
  objects are refused by the transcoder);
- identity headers sent by a client (Envoy's claims header, x-forwarded-for games) grant
  nothing, and the per-IP rate limit and the per-account login throttle still hold.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import string
import time
import uuid

import aiohttp
import httpx
import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from mesh.api import load
from mesh.generate import DESCRIPTOR
from mesh.testing import GRPC_WEB_HEADERS, grpc_web_parse, grpc_web_request
from services.runtime.auth import PAYLOAD_HEADER
from shop.notification.v1 import notification_pb2 as npb
from shop.order.v1 import order_pb2 as opb
from shop.product.v1 import product_pb2 as ppb
from shop.user.v1 import user_pb2 as upb
from tests.reliability.harness import (
    ADDRESS,
    FIGURES,
    PORTS,
    Stubs,
    create_product,
    eventually,
    register,
)
from tests.reliability.test_fuzz import message_class

pytestmark = [pytest.mark.stack, pytest.mark.soak, pytest.mark.timeout(600)]

API = load(DESCRIPTOR)
PROTECTED = [m for m in API.methods if m.access != "public"]
INJECTIONS = [
    "' OR 1=1 --",
    "' OR '1'='1' /*",
    "'; DROP TABLE users; --",
    "1) UNION SELECT email, password_hash FROM users --",
    '{"$gt": ""}',
    '{"$ne": null}',
    "$where",
    "'; return true; var x='",
    "%",
    "_",
    ".*",
]


def letters(n: int = 12) -> str:
    return "".join(random.choices(string.ascii_lowercase, k=n))


@pytest.fixture(scope="module")
def up(stack):
    return stack.require("nginx", *PORTS)  # every service it calls


@pytest.fixture
async def stubs(up):
    s = Stubs()
    yield s
    s.close()


@pytest.fixture
async def gw(up):
    async with httpx.AsyncClient(base_url=up.nginx_url, timeout=15) as c:
        yield c


async def call_direct(method, request, metadata=None) -> Status:
    port = PORTS[method.service.split(".")[1]]
    channel = Channel("127.0.0.1", port)
    try:
        async with channel.request(
            method.grpc_path,
            Cardinality.UNARY_UNARY,
            type(request),
            message_class(method.output_type),
            timeout=10,
            metadata=metadata,
        ) as stream:
            await stream.send_message(request, end=True)
            await stream.recv_message()
            await stream.recv_trailing_metadata()
    except GRPCError as exc:
        return exc.status
    finally:
        channel.close()
    return Status.OK


async def call_grpc_web(gw: httpx.AsyncClient, method, request, headers=None) -> str:
    r = await gw.post(
        f"/api{method.grpc_path}",
        content=grpc_web_request(request.SerializeToString()),
        headers={**GRPC_WEB_HEADERS, **(headers or {})},
    )
    if r.status_code != 200:
        return f"HTTP_{r.status_code}"
    _, trailers = grpc_web_parse(r.content, dict(r.headers))
    return Status(int(trailers.get("grpc-status", "2"))).name


def rest_path(rule) -> str:
    path = rule.path
    for p in rule.path_params:
        path = path.replace("{" + p + "}", "x1")
    return path


# ---------------------------------------------------------------- missing / wrong tokens


async def test_every_protected_method_refuses_a_call_without_token(gw, stubs):
    user = await register(stubs, "sec")
    checked = 0
    for m in PROTECTED:
        empty = message_class(m.input_type)()
        assert await call_direct(m, empty) == Status.UNAUTHENTICATED, m.grpc_path
        if m.access == "internal":
            # A user token is not a service identity; and the edge does not route it at all.
            assert await call_direct(m, empty, user.bearer) == Status.PERMISSION_DENIED, m.name
            assert await call_grpc_web(gw, m, empty, user.bearer) in (
                "HTTP_404",
                "UNIMPLEMENTED",
                "PERMISSION_DENIED",
            ), m.name
            checked += 3
            continue
        assert await call_grpc_web(gw, m, empty) in ("HTTP_401", "UNAUTHENTICATED"), m.name
        for rule in m.http:
            r = await gw.request(rule.verb.upper(), rest_path(rule), json={} if rule.body else None)
            assert r.status_code == 401, (m.name, rule.path, r.status_code, r.text)
            checked += 1
        if m.access == "admin":
            assert await call_direct(m, empty, user.bearer) == Status.PERMISSION_DENIED, m.name
            web = await call_grpc_web(gw, m, empty, user.bearer)
            assert web in ("HTTP_403", "PERMISSION_DENIED"), (m.name, web)
            checked += 2
        checked += 2
    FIGURES.security["protected methods refused without token / with a weaker one"] = checked
    assert {m.access for m in PROTECTED} >= {"user", "admin", "internal"}


async def test_user_a_cannot_read_or_change_user_b(gw, stubs):
    a, b = await register(stubs, "sec-a"), await register(stubs, "sec-b")
    product = await create_product(stubs, "sec", 100)
    order = (
        await stubs.order.PlaceOrder(
            opb.PlaceOrderRequest(
                idempotency_key=f"sec-{uuid.uuid4().hex}",
                user_id=b.user_id,
                lines=[opb.LineItem(product_id=product.id, quantity=1)],
                shipping_address=ADDRESS,
            ),
            metadata=b.bearer,
            timeout=15,
        )
    ).order
    address = (
        await stubs.user.AddAddress(
            upb.AddAddressRequest(user_id=b.user_id, address=ADDRESS), metadata=b.bearer
        )
    ).address
    denied = (Status.NOT_FOUND, Status.PERMISSION_DENIED)
    attempts = [
        (stubs.order.GetOrder, opb.GetOrderRequest(id=order.id)),
        (stubs.order.CancelOrder, opb.CancelOrderRequest(id=order.id, reason="not mine")),
        (stubs.order.ListOrders, opb.ListOrdersRequest(user_id=b.user_id)),
        (
            stubs.order.PlaceOrder,
            opb.PlaceOrderRequest(
                idempotency_key=f"sec-{uuid.uuid4().hex}",
                user_id=b.user_id,
                lines=[opb.LineItem(product_id=product.id, quantity=1)],
                shipping_address=ADDRESS,
            ),
        ),
        (stubs.user.GetUser, upb.GetUserRequest(id=b.user_id)),
        (stubs.user.UpdateProfile, upb.UpdateProfileRequest(id=b.user_id, display_name="Mallory")),
        (stubs.user.AddAddress, upb.AddAddressRequest(user_id=b.user_id, address=ADDRESS)),
        (stubs.user.ListAddresses, upb.ListAddressesRequest(user_id=b.user_id)),
        (
            stubs.user.RemoveAddress,
            upb.RemoveAddressRequest(user_id=b.user_id, address_id=address.id),
        ),
        (stubs.notification.ListNotifications, npb.ListNotificationsRequest(user_id=b.user_id)),
    ]
    for call, request in attempts:
        with pytest.raises(GRPCError) as err:
            await call(request, metadata=a.bearer, timeout=10)
        assert err.value.status in denied, (type(request).__name__, err.value.status)
    # The same through the gateway (REST).
    rest = [
        ("GET", f"/api/v1/orders/{order.id}", None),
        ("POST", f"/api/v1/orders/{order.id}:cancel", {"reason": "not mine"}),
        ("GET", f"/api/v1/orders?user_id={b.user_id}", None),
        ("GET", f"/api/v1/users/{b.user_id}", None),
        ("PATCH", f"/api/v1/users/{b.user_id}", {"display_name": "Mallory"}),
        ("GET", f"/api/v1/users/{b.user_id}/addresses", None),
        ("DELETE", f"/api/v1/users/{b.user_id}/addresses/{address.id}", None),
        ("GET", f"/api/v1/notifications?user_id={b.user_id}", None),
    ]
    for verb, path, body in rest:
        r = await gw.request(verb, path, json=body, headers=a.bearer)
        assert r.status_code in (403, 404), (verb, path, r.status_code, r.text)
    # B's data is untouched.
    got = (await stubs.order.GetOrder(opb.GetOrderRequest(id=order.id), metadata=b.bearer)).order
    assert got.status == opb.ORDER_STATUS_CONFIRMED
    me = (await stubs.user.GetUser(upb.GetUserRequest(id=b.user_id), metadata=b.bearer)).user
    assert me.display_name == "Rel Tester"
    mine = await stubs.user.ListAddresses(
        upb.ListAddressesRequest(user_id=b.user_id), metadata=b.bearer
    )
    assert [x.id for x in mine.addresses] == [address.id]
    FIGURES.security["cross-user access refused (direct + REST)"] = len(attempts) + len(rest)


# ---------------------------------------------------------------- injection strings


async def test_injection_strings_are_stored_verbatim_or_rejected_never_interpreted(gw, stubs):
    tag = letters()
    canary = await create_product(stubs, tag, 5)  # named "Reliability <tag>": no shared word
    cases = 0
    for s in INJECTIONS:
        try:
            reply = await stubs.product.SearchProducts(
                ppb.SearchProductsRequest(query=s, page_size=100), timeout=10
            )
        except GRPCError as exc:
            assert exc.status == Status.INVALID_ARGUMENT, (s, exc.status, exc.message)
            continue
        ids = {p.id for p in reply.products}
        assert canary.id not in ids, f"search {s!r} matched an unrelated product"
        r = await gw.get("/api/v1/products:search", params={"query": s, "page_size": 100})
        assert r.status_code in (200, 400), (s, r.status_code, r.text)
        if r.status_code == 200:
            assert canary.id not in {p["id"] for p in r.json().get("products", [])}
        cases += 2

    # Stored verbatim: profile, addresses, a cancel reason.
    user = await register(stubs, "inj", display_name=INJECTIONS[0])
    got = (await stubs.user.GetUser(upb.GetUserRequest(id=user.user_id), metadata=user.bearer)).user
    assert got.display_name == INJECTIONS[0]
    for s in INJECTIONS:
        updated = await stubs.user.UpdateProfile(
            upb.UpdateProfileRequest(id=user.user_id, display_name=s), metadata=user.bearer
        )
        assert updated.user.display_name == s

        async def read_back(s: str = s) -> bool:
            # Reads go to the replica: a read that does not echo the write's x-shop-lsn sees
            # the write once the replica has replayed it, so poll briefly.
            got = await stubs.user.GetUser(
                upb.GetUserRequest(id=user.user_id), metadata=user.bearer
            )
            return got.user.display_name == s

        assert await eventually(read_back, within=5.0, every=0.1), f"{s!r} not stored verbatim"
        cases += 1
    address = opb.PlaceOrderRequest().shipping_address
    address.CopyFrom(ADDRESS)
    address.line1, address.line2, address.city = INJECTIONS[4], INJECTIONS[2], INJECTIONS[6]
    await stubs.user.AddAddress(
        upb.AddAddressRequest(user_id=user.user_id, address=address), metadata=user.bearer
    )

    async def addresses_read_back() -> bool:
        # A replica read without the write's x-shop-lsn: it sees the write once replayed.
        listed = await stubs.user.ListAddresses(
            upb.ListAddressesRequest(user_id=user.user_id), metadata=user.bearer
        )
        return [a.address for a in listed.addresses] == [address]

    assert await eventually(addresses_read_back, within=5.0, every=0.1), "address not verbatim"
    placed = (
        await stubs.order.PlaceOrder(
            opb.PlaceOrderRequest(
                idempotency_key=f"inj-{uuid.uuid4().hex}",
                user_id=user.user_id,
                lines=[opb.LineItem(product_id=canary.id, quantity=1)],
                shipping_address=address,
            ),
            metadata=user.bearer,
        )
    ).order
    assert placed.shipping_address == address
    cancelled = (
        await stubs.order.CancelOrder(
            opb.CancelOrderRequest(id=placed.id, reason=INJECTIONS[5]), metadata=user.bearer
        )
    ).order
    assert cancelled.cancel_reason == INJECTIONS[5]
    cases += 3

    # Operator objects where the schema says string: the transcoder refuses them.
    operator_bodies = [
        ("POST", "/api/v1/auth/login", {"email": {"$gt": ""}, "password": {"$ne": None}}),
        ("POST", "/api/v1/orders", {"user_id": {"$ne": None}, "idempotency_key": "k" * 10}),
        ("PATCH", f"/api/v1/users/{user.user_id}", {"display_name": {"$where": "1"}}),
    ]
    for verb, path, body in operator_bodies:
        r = await gw.request(verb, path, json=body, headers=user.bearer)
        assert r.status_code == 400, (path, r.status_code, r.text)
    for value in ('{"$gt":""}', "$where", "' OR 1=1 --"):
        r = await gw.get("/api/v1/orders", params={"user_id": value}, headers=user.bearer)
        assert r.status_code in (400, 403), (value, r.status_code, r.text)
        r = await gw.get(f"/api/v1/orders/{value}", headers=user.bearer)
        assert r.status_code in (400, 404), (value, r.status_code, r.text)
    cases += len(operator_bodies) + 6
    FIGURES.security["injection strings (stored verbatim / rejected)"] = cases


# ---------------------------------------------------------------- spoofed identity, limits


def fake_claims(sub: str) -> str:
    claims = {"sub": sub, "roles": ["admin", "service"], "iss": "https://auth.shopmesh.local"}
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")


async def test_client_sent_identity_headers_grant_nothing(gw, stubs):
    user = await register(stubs, "spoof")
    spoof = {
        PAYLOAD_HEADER: fake_claims(user.user_id),
        "x-forwarded-for": "10.0.0.1",
        "x-real-ip": "10.0.0.1",
        "x-user-id": user.user_id,
        "x-shop-user-id": user.user_id,
    }
    # No token + forged claims: still unauthenticated.
    r = await gw.get(f"/api/v1/users/{user.user_id}", headers=spoof)
    assert r.status_code == 401, r.text
    with pytest.raises(GRPCError) as err:
        await stubs.user.GetUser(upb.GetUserRequest(id=user.user_id), metadata=spoof)
    assert err.value.status == Status.UNAUTHENTICATED
    # A user token + forged admin claims: still not an admin.
    r = await gw.post(
        "/api/v1/products",
        json={"sku": "SPOOF-1", "name": "x", "category": "fuzz", "price": {"currency_code": "USD"}},
        headers={**spoof, **user.bearer},
    )
    assert r.status_code == 403, r.text
    with pytest.raises(GRPCError) as err:
        await stubs.product.CreateProduct(
            ppb.CreateProductRequest(sku="SPOOF-2", name="x", category="fuzz"),
            metadata={**spoof, **user.bearer},
        )
    assert err.value.status == Status.PERMISSION_DENIED
    FIGURES.security["spoofed identity headers"] = 4


async def test_login_throttle_holds_whatever_x_forwarded_for_says(gw, stubs):
    """Wrong passwords for one (own) account from 'different' forwarded addresses: the
    account still locks, because the gateway overwrites x-forwarded-for; while locked even
    the right password is refused ("too many" attempts)."""
    user = await register(stubs, "throttle")

    def spoofed() -> dict[str, str]:
        xff = f"203.0.113.{random.randint(1, 254)}"
        return {"x-forwarded-for": xff, "x-real-ip": xff}

    codes = []
    for _ in range(8):
        r = await gw.post(
            "/api/v1/auth/login",
            json={"email": user.email, "password": "wrong-password-123"},
            headers=spoofed(),
        )
        codes.append(r.status_code)
    assert set(codes) <= {401, 429}, codes
    r = await gw.post(
        "/api/v1/auth/login",
        json={"email": user.email, "password": user.password},
        headers=spoofed(),
    )
    assert r.status_code in (401, 429) and "too many" in r.text.lower(), (r.status_code, r.text)
    FIGURES.security["login throttle with rotating x-forwarded-for"] = len(codes) + 1


async def test_rate_limit_holds_under_a_burst_with_spoofed_addresses(up):
    """1,000 requests as fast as 50 connections go, from one address that claims many
    (x-forwarded-for rotates): NGINX's per-IP limit (100/s, burst 200, nodelay) admits at
    most burst + rate x elapsed and answers 429 to the rest. The request is a tokenless
    ListOrders, which Envoy refuses (401) without calling a service, so how many get through
    is NGINX's limit at work, not a service's throughput."""
    rate, burst, n = 100, 200, 1000  # mesh/out/nginx/nginx.conf: zone api_per_ip
    # aiohttp, not httpx: httpx's pool with 1,000 waiting tasks sends ~80 requests/s here,
    # too slow to outrun the bucket; aiohttp sends the 1,000 in well under a second.
    timeout = aiohttp.ClientTimeout(total=15)
    connector = aiohttp.TCPConnector(limit=50)
    async with aiohttp.ClientSession(up.nginx_url, timeout=timeout, connector=connector) as c:

        async def one(i: int) -> int:
            xff = f"198.51.100.{i % 250 + 1}"
            async with c.get("/api/v1/orders", headers={"x-forwarded-for": xff}) as r:
                await r.read()
                return r.status

        t0 = time.monotonic()
        codes = await asyncio.gather(*(one(i) for i in range(n)))
        took = time.monotonic() - t0
    got = {c: codes.count(c) for c in set(codes)}
    admitted, limited = got.get(401, 0), got.get(429, 0)
    figure = f"{admitted} / {limited} / {took:.1f}"
    FIGURES.security[f"burst of {n}: admitted / 429 / seconds"] = figure
    assert set(got) <= {401, 429}, got
    # Others on this loopback share the bucket: they can only lower what we get through.
    assert admitted <= burst + rate * took + 10, (got, took)
    if took < (n - burst) / rate - 1:  # too fast for the bucket to admit all of them
        assert limited > 0, (got, took)
    await asyncio.sleep(3)  # let the bucket refill for whoever tests next
