"""Ownership end to end: a shopper reads, cancels and places orders only for themselves, and
reads only their own profile.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from grpclib.const import Status

from tests.e2e.auth_accounts import bearer

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]


def test_a_user_cannot_read_another_users_profile(gw: httpx.Client, alice: dict, bob: dict) -> None:
    r = gw.get(f"/api/v1/users/{bob['user_id']}", headers=bearer(alice["access_token"]))
    assert r.status_code in (403, 404), r.text
    r = gw.get(f"/api/v1/users/{bob['user_id']}/addresses", headers=bearer(alice["access_token"]))
    assert r.status_code in (403, 404), r.text


def _order_body(gw: httpx.Client, who: dict) -> dict:
    products = gw.get("/api/v1/products", params={"page_size": 50}).json()["products"]
    in_stock = [p for p in products if int(p.get("stock", 0) or 0) > 5]
    assert in_stock, "demo catalog has no product in stock"
    return {
        "user_id": who["user_id"],
        "idempotency_key": uuid.uuid4().hex,
        "lines": [{"product_id": in_stock[0]["id"], "quantity": 1}],
        "shipping_address": {
            "recipient_name": "A",
            "line1": "1 Main St",
            "city": "Springfield",
            "postal_code": "12345",
            "country_code": "US",
        },
    }


def _place_order(gw: httpx.Client, who: dict) -> dict:
    body = _order_body(gw, who)
    r = gw.post("/api/v1/orders", json=body, headers=bearer(who["access_token"]))
    assert r.status_code == 200, r.text
    return r.json()["order"]


def test_a_user_cannot_read_or_cancel_another_users_order(
    gw: httpx.Client, alice: dict, bob: dict
) -> None:
    order = _place_order(gw, alice)
    r = gw.get(f"/api/v1/orders/{order['id']}", headers=bearer(bob["access_token"]))
    assert r.status_code in (403, 404), r.text
    r = gw.post(
        f"/api/v1/orders/{order['id']}:cancel",
        json={"reason": "x"},
        headers=bearer(bob["access_token"]),
    )
    assert r.status_code in (403, 404), r.text
    r = gw.get(
        "/api/v1/orders", params={"user_id": alice["user_id"]}, headers=bearer(bob["access_token"])
    )
    assert r.status_code in (403, 404), r.text
    mine = gw.get(f"/api/v1/orders/{order['id']}", headers=bearer(alice["access_token"]))
    assert mine.status_code == 200 and mine.json()["order"]["status"] == order["status"]


def _order_ids(gw: httpx.Client, who: dict) -> set[str]:
    r = gw.get(
        "/api/v1/orders",
        params={"user_id": who["user_id"], "page_size": 100},
        headers=bearer(who["access_token"]),
    )
    assert r.status_code == 200, r.text
    return {o["id"] for o in r.json().get("orders", [])}


def test_placing_an_order_for_someone_else_is_refused(
    gw: httpx.Client, alice: dict, bob: dict
) -> None:
    """PlaceOrder checks ownership before anything is written (services/order/handlers.py:
    require_self_or_admin, not hidden: the caller named the user), so alice's token on an
    order for bob is PERMISSION_DENIED (403) and bob has no order afterwards."""
    before = _order_ids(gw, bob)
    body = _order_body(gw, bob)
    r = gw.post("/api/v1/orders", json=body, headers=bearer(alice["access_token"]))
    assert r.status_code == 403, r.text
    assert r.json()["code"] == Status.PERMISSION_DENIED.value, r.text
    # Orders are read from a replica: bob's own order, written after the refused call, shows
    # the replica has caught up past it; then exactly that one order is new.
    own = _place_order(gw, bob)
    deadline = time.monotonic() + 10
    while own["id"] not in (after := _order_ids(gw, bob)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert after - before == {own["id"]}, (before, after, own["id"])
