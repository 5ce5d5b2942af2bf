"""The cart through the gateway: NGINX (8080) -> Envoy (REST transcoding, gRPC-Web, JWT) ->
the stack's cart service, and the stack's cart emptied by a real order's OrderPlaced event
(order service -> outbox relay -> shop.orders.v1 -> the cart service's consumer group).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from mesh.testing import GRPC_WEB_HEADERS, grpc_web_parse, grpc_web_request
from shop.cart.v1 import cart_pb2 as pb
from tests.e2e.edge_clients import (
    SHIPPING,
    assert_rest_error,
    bearer,
    private_loopback,
    register_and_login,
)

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

SVC = "/api/shop.cart.v1.CartService"
INVALID_ARGUMENT, PERMISSION_DENIED, UNAUTHENTICATED = 3, 7, 16


@pytest.fixture(scope="module")
def gw(stack) -> Iterator[httpx.Client]:
    stack.require("nginx", "auth", "user", "product", "order", "cart")
    # A loopback address of its own: NGINX's per-IP limit and the auth throttle are ours.
    transport = httpx.HTTPTransport(local_address=private_loopback())
    with httpx.Client(base_url=stack.nginx_url, timeout=15, transport=transport) as client:
        yield client


@pytest.fixture
def shopper(gw: httpx.Client) -> dict:
    return register_and_login(gw)


def items(body: dict) -> list[tuple[str, int]]:
    return [(i["product_id"], int(i["quantity"])) for i in body["cart"].get("items", [])]


def eventually(check: Callable[[], Any], within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def in_stock(gw: httpx.Client, n: int) -> list[str]:
    products = gw.get("/api/v1/products", params={"page_size": 50}).json()["products"]
    ids = [p["id"] for p in products if int(p.get("stock", 0) or 0) > 5]
    assert len(ids) >= n, "demo catalog has too few products in stock"
    return ids[:n]


def test_rest_add_change_remove_and_read(gw: httpx.Client, shopper: dict) -> None:
    uid, auth = shopper["user_id"], bearer(shopper["access_token"])
    base = f"/api/v1/carts/{uid}"
    r = gw.post(f"{base}/items", json={"product_id": "p-0001", "quantity": 2}, headers=auth)
    assert r.status_code == 200, r.text
    assert items(r.json()) == [("p-0001", 2)]
    r = gw.post(f"{base}/items", json={"product_id": "p-0002", "quantity": 1}, headers=auth)
    r = gw.put(f"{base}/items/p-0001", json={"quantity": 5}, headers=auth)
    assert r.status_code == 200, r.text
    assert items(r.json()) == [("p-0001", 5), ("p-0002", 1)]
    r = gw.delete(f"{base}/items/p-0002", headers=auth)
    assert r.status_code == 200 and items(r.json()) == [("p-0001", 5)], r.text
    # REST carries no x-shop-lsn back, so this read may reach the replica a moment early.
    eventually(lambda: items(gw.get(base, headers=auth).json()) == [("p-0001", 5)])
    browser = [{"product_id": "p-0001", "quantity": 3}, {"product_id": "p-0003", "quantity": 1}]
    r = gw.post(f"{base}:merge", json={"items": browser}, headers=auth)
    assert r.status_code == 200, r.text
    assert items(r.json()) == [("p-0001", 5), ("p-0003", 1)]
    r = gw.delete(base, headers=auth)
    assert r.status_code == 200 and items(r.json()) == [], r.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"product_id": "p-0001", "quantity": 101}, "quantity"),
        ({"product_id": "p-0001", "quantity": 0}, "quantity"),
        ({"product_id": "no such id!", "quantity": 1}, "product_id"),
    ],
)
def test_rest_bad_input_is_400_naming_the_field(
    gw: httpx.Client, shopper: dict, body: dict, field: str
) -> None:
    uid, auth = shopper["user_id"], bearer(shopper["access_token"])
    r = gw.post(f"/api/v1/carts/{uid}/items", json=body, headers=auth)
    assert_rest_error(r, 400, INVALID_ARGUMENT, field)
    assert items(gw.get(f"/api/v1/carts/{uid}", headers=auth).json()) == []


def test_rest_another_shoppers_cart_is_403_and_no_token_401(
    gw: httpx.Client, shopper: dict
) -> None:
    other = register_and_login(gw)
    uid = shopper["user_id"]
    r = gw.post(
        f"/api/v1/carts/{uid}/items",
        json={"product_id": "p-0001", "quantity": 1},
        headers=bearer(shopper["access_token"]),
    )
    assert r.status_code == 200, r.text
    assert_rest_error(
        gw.get(f"/api/v1/carts/{uid}", headers=bearer(other["access_token"])),
        403, PERMISSION_DENIED,
    )  # fmt: skip
    assert_rest_error(
        gw.post(f"/api/v1/carts/{uid}/items", json={"product_id": "p-0002", "quantity": 1},
                headers=bearer(other["access_token"])),
        403, PERMISSION_DENIED,
    )  # fmt: skip
    assert_rest_error(gw.get(f"/api/v1/carts/{uid}"), 401, UNAUTHENTICATED)
    got = eventually(
        lambda: items(
            gw.get(f"/api/v1/carts/{uid}", headers=bearer(shopper["access_token"])).json()
        )
    )
    assert got == [("p-0001", 1)], "the refused calls changed nothing"


def grpc_web(gw: httpx.Client, method: str, request: Any, reply_cls: Any, token: str,
             lsn: str = "") -> tuple[int, str, Any, str]:  # fmt: skip
    """(grpc-status, grpc-message, reply or None, x-shop-lsn of the call)."""
    headers = {**GRPC_WEB_HEADERS, **bearer(token), **({"x-shop-lsn": lsn} if lsn else {})}
    r = gw.post(
        f"{SVC}/{method}", content=grpc_web_request(request.SerializeToString()), headers=headers
    )
    assert r.status_code == 200, r.text
    messages, trailers = grpc_web_parse(r.content, dict(r.headers))
    reply = reply_cls.FromString(messages[0]) if messages else None
    lsn_out = trailers.get("x-shop-lsn") or r.headers.get("x-shop-lsn", "")
    return (
        int(trailers["grpc-status"]),
        urllib.parse.unquote(trailers.get("grpc-message", "")),
        reply,
        lsn_out,
    )


def test_grpc_web_add_then_read_your_writes_and_a_bad_quantity(
    gw: httpx.Client, shopper: dict
) -> None:
    uid, token = shopper["user_id"], shopper["access_token"]
    add = pb.AddItemRequest(user_id=uid, product_id="p-0004", quantity=3)
    status, message, reply, lsn = grpc_web(gw, "AddItem", add, pb.AddItemResponse, token)
    assert status == 0, message
    assert [(i.product_id, i.quantity) for i in reply.cart.items] == [("p-0004", 3)]
    assert lsn, "the write's commit LSN comes back in the gRPC-Web trailers"
    get = pb.GetCartRequest(user_id=uid)
    status, message, reply, _ = grpc_web(gw, "GetCart", get, pb.GetCartResponse, token, lsn)
    assert status == 0, message
    assert [(i.product_id, i.quantity) for i in reply.cart.items] == [("p-0004", 3)]
    bad = pb.AddItemRequest(user_id=uid, product_id="p-0004", quantity=98)
    status, message, _, _ = grpc_web(gw, "AddItem", bad, pb.AddItemResponse, token, lsn)
    assert status == INVALID_ARGUMENT and "quantity" in message, message


def test_a_placed_order_empties_the_cart_through_the_event(gw: httpx.Client, shopper: dict) -> None:
    """The order service never calls the cart: the stack's cart service reads OrderPlaced
    from shop.orders.v1 and takes the ordered lines out; a line not ordered stays."""
    uid, auth = shopper["user_id"], bearer(shopper["access_token"])
    ordered, kept = in_stock(gw, 2)
    for pid, q in ((ordered, 2), (kept, 1)):
        r = gw.post(f"/api/v1/carts/{uid}/items", json={"product_id": pid, "quantity": q},
                    headers=auth)  # fmt: skip
        assert r.status_code == 200, r.text
    body = {
        "user_id": uid,
        "idempotency_key": f"cart-e2e-{time.time_ns()}",
        "lines": [{"product_id": ordered, "quantity": 2}],
        "shipping_address": SHIPPING,
    }
    r = gw.post("/api/v1/orders", json=body, headers=auth)
    assert r.status_code == 200, r.text
    eventually(lambda: items(gw.get(f"/api/v1/carts/{uid}", headers=auth).json()) == [(kept, 1)])
