"""Currency and shipping quotes at checkout, end to end through NGINX -> Envoy -> the real
order, currency, shipping and product services (REST and gRPC-Web): an order keeps the
currency, rate version and quote it was placed with on GetOrder and on a replay of its
PlaceOrder; a bad, unknown, expired or mismatched quote or currency is refused naming the
field; a dead shipping or currency service degrades the price, never the checkout."""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
import uuid

import asyncpg
import httpx
import pytest
from grpclib.client import Channel

from mesh.testing import GRPC_WEB_HEADERS, grpc_web_parse, grpc_web_request
from shop.common.v1 import common_pb2
from shop.order.v1 import order_pb2
from shop.product.v1 import product_pb2
from shop.product.v1.product_grpc import ProductServiceStub
from shop.topology import SERVICES
from stack import postgres
from stack.callers import as_platform
from tests.e2e.edge_clients import bearer, register_and_login

pytestmark = pytest.mark.stack

DE = {
    "recipient_name": "Grace Hopper", "line1": "Unter den Linden 1", "city": "Berlin",
    "postal_code": "10117", "country_code": "DE",
}  # fmt: skip


def nanos(m: dict) -> int:
    return int(m.get("units", 0)) * 10**9 + int(m.get("nanos", 0))


@pytest.fixture(scope="module")
def gateway(stack) -> str:
    stack.require("order", "currency", "shipping", "auth", "nginx")
    return stack.nginx_url


@pytest.fixture
def gw(gateway):
    with httpx.Client(base_url=gateway, timeout=15) as c:
        yield c


@pytest.fixture(scope="module")
def shopper(gateway) -> dict:
    with httpx.Client(base_url=gateway, timeout=15) as c:
        return register_and_login(c)


@pytest.fixture(scope="module")
async def products(gateway) -> list[str]:
    """Two products of this module: 89.00 and 59.90 USD, stock 500."""
    channel = as_platform(Channel("127.0.0.1", SERVICES["product"].port))
    stub = ProductServiceStub(channel)
    ids = []
    for units, n in ((89, 0), (59, 900_000_000)):
        tag = uuid.uuid4().hex[:10]
        reply = await stub.CreateProduct(
            product_pb2.CreateProductRequest(
                sku=f"PRICE-{tag}", name=f"Priced {tag}", category="test", stock=500,
                price=common_pb2.Money(currency_code="USD", units=units, nanos=n),
            )
        )  # fmt: skip
        ids.append(reply.product.id)
    channel.close()
    return ids


def quote(gw: httpx.Client, lines, currency: str, country: str = "DE") -> httpx.Response:
    return gw.post(
        "/api/v1/shipping/quotes",
        json={
            "country_code": country,
            "currency_code": currency,
            "lines": [{"product_id": p, "quantity": q} for p, q in lines],
        },
    )


def order_body(who: dict, lines, currency: str = "", quote_id: str | None = None, key=None):
    body = {
        "user_id": who["user_id"],
        "idempotency_key": key or uuid.uuid4().hex,
        "lines": [{"product_id": p, "quantity": q} for p, q in lines],
        "shipping_address": DE,
        "currency_code": currency,
    }
    if quote_id is not None:
        body["shipping_quote_id"] = quote_id
    return body


def place(gw: httpx.Client, who: dict, body: dict) -> httpx.Response:
    return gw.post("/api/v1/orders", json=body, headers=bearer(who["access_token"]))


def convert(gw: httpx.Client, amounts: list[dict], to: str, version: int = 0) -> list[dict]:
    r = gw.post(
        "/api/v1/currencies:convert",
        json={"amounts": amounts, "to_currency_code": to, "rate_version": str(version)},
    )
    assert r.status_code == 200, r.text
    return r.json()["amounts"]


def test_rest_order_keeps_its_currency_rate_and_quote_on_get_and_replay(gw, shopper, products):
    p1, p2 = products
    lines = [(p1, 2), (p2, 1)]
    q = quote(gw, lines, "EUR")
    assert q.status_code == 200, q.text
    q = q.json()["quote"]
    assert q["price"]["currency_code"] == "EUR" and int(q["rate_version"]) > 0
    # DE is in the rules' europe zone: 9.90 + 3 x 1.00 USD, converted at the quote's version.
    (expected_ship,) = convert(
        gw, [{"currency_code": "USD", "units": "12", "nanos": 900_000_000}], "EUR",
        int(q["rate_version"]),
    )  # fmt: skip
    assert nanos(q["price"]) == nanos(expected_ship)
    body = order_body(shopper, lines, "EUR", q["id"])
    r = place(gw, shopper, body)
    assert r.status_code == 200, r.text
    order = r.json()["order"]
    assert order["currency_code"] == "EUR"
    assert order["rate_version"] == q["rate_version"]
    assert order["shipping_quote_id"] == q["id"]
    assert order["shipping_cost"] == q["price"]
    unit_eur = convert(
        gw, [order["lines"][0]["unit_price"], order["lines"][1]["unit_price"]], "EUR",
        int(q["rate_version"]),
    )  # fmt: skip
    assert [ln["converted_unit_price"] for ln in order["lines"]] == unit_eur
    items = sum(nanos(ln["converted_line_total"]) for ln in order["lines"])
    assert nanos(order["converted_total"]) == items == 2 * nanos(unit_eur[0]) + nanos(unit_eur[1])
    assert nanos(order["grand_total"]) == items + nanos(q["price"])
    assert order["total"]["currency_code"] == "USD" and nanos(order["total"]) == 237_900_000_000
    # GetOrder and a replay of the same PlaceOrder return the same order, field for field.
    got = gw.get(f"/api/v1/orders/{order['id']}", headers=bearer(shopper["access_token"]))
    assert got.status_code == 200 and got.json()["order"] == order
    again = place(gw, shopper, body)
    assert again.status_code == 200 and again.json()["order"] == order
    # The same key with another currency is another request: refused, not a silent replay.
    other = place(gw, shopper, {**body, "currency_code": "GBP"})
    assert other.status_code == 400 and "idempotency_key" in other.text


async def test_grpc_web_order_in_yen_keeps_currency_and_quote(gateway, gw, shopper, products):
    p1, _ = products
    q = quote(gw, [(p1, 1)], "JPY").json()["quote"]
    request = order_pb2.PlaceOrderRequest(
        idempotency_key=uuid.uuid4().hex,
        user_id=shopper["user_id"],
        lines=[order_pb2.LineItem(product_id=p1, quantity=1)],
        shipping_address=common_pb2.Address(**DE),
        currency_code="JPY",
        shipping_quote_id=q["id"],
    )
    headers = {**GRPC_WEB_HEADERS, **bearer(shopper["access_token"])}
    svc = "/api/shop.order.v1.OrderService"
    async with httpx.AsyncClient(base_url=gateway, timeout=15) as c:

        async def call(method: str, req, cls):
            resp = await c.post(
                f"{svc}/{method}", content=grpc_web_request(req.SerializeToString()),
                headers=headers,
            )  # fmt: skip
            messages, trailers = grpc_web_parse(resp.content, dict(resp.headers))
            status = int(trailers["grpc-status"])
            assert status == 0, urllib.parse.unquote(trailers.get("grpc-message", ""))
            return cls.FromString(messages[0]).order

        placed = await call("PlaceOrder", request, order_pb2.PlaceOrderResponse)
        got = await call(
            "GetOrder", order_pb2.GetOrderRequest(id=placed.id), order_pb2.GetOrderResponse
        )
        replay = await call("PlaceOrder", request, order_pb2.PlaceOrderResponse)
    assert placed.currency_code == "JPY" and placed.shipping_quote_id == q["id"]
    assert placed.rate_version == int(q["rate_version"])
    (yen,) = convert(gw, [{"currency_code": "USD", "units": "89"}], "JPY", int(q["rate_version"]))
    assert (placed.converted_total.units, placed.converted_total.nanos) == (int(yen["units"]), 0)
    assert got == placed and replay == placed


def test_bad_currency_and_quotes_are_refused_naming_the_field(gw, shopper, products):
    p1, p2 = products
    lines = [(p1, 1)]
    for currency in ("eur", "XXX"):
        r = place(gw, shopper, order_body(shopper, lines, currency))
        assert r.status_code == 400 and "currency_code" in r.text, r.text
    r = place(gw, shopper, order_body(shopper, lines, "EUR", "no-such-quote"))
    assert r.status_code == 400 and "shipping_quote_id" in r.text, r.text
    r = place(gw, shopper, order_body(shopper, lines, "EUR", "bad id!"))
    assert r.status_code == 400 and "shipping_quote_id" in r.text, r.text
    fr = quote(gw, lines, "EUR", country="FR").json()["quote"]
    r = place(gw, shopper, order_body(shopper, lines, "EUR", fr["id"]))  # ships to DE
    assert r.status_code == 400 and "shipping_quote_id" in r.text and "FR" in r.text, r.text
    other_lines = quote(gw, [(p2, 1)], "EUR").json()["quote"]
    r = place(gw, shopper, order_body(shopper, lines, "EUR", other_lines["id"]))
    assert r.status_code == 400 and "shipping_quote_id" in r.text, r.text
    gbp = quote(gw, lines, "GBP").json()["quote"]
    r = place(gw, shopper, order_body(shopper, lines, "EUR", gbp["id"]))
    assert r.status_code == 400 and "shipping_quote_id" in r.text and "GBP" in r.text, r.text
    r = quote(gw, lines, "EUR", country="de")
    assert r.status_code == 400 and "country_code" in r.text, r.text


async def test_an_expired_quote_is_a_failed_precondition_naming_the_field(gw, shopper, products):
    p1, _ = products
    q = quote(gw, [(p1, 1)], "EUR").json()["quote"]
    conn = await asyncpg.connect(postgres.dsn("shipping"))
    try:  # the stack's quotes live 15 minutes: age this one instead of waiting
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        await conn.execute("UPDATE quotes SET expires_at = $1 WHERE id = $2", past, q["id"])
    finally:
        await conn.close()
    r = place(gw, shopper, order_body(shopper, [(p1, 1)], "EUR", q["id"]))
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 9 and "shipping_quote_id" in r.text  # FAILED_PRECONDITION


def test_dead_shipping_degrades_the_quote_and_checkout_charges_the_default_rule(
    stack, gw, shopper, products
):
    p1, _ = products
    q = quote(gw, [(p1, 1)], "EUR").json()["quote"]
    stack.stop("shipping")
    try:
        down = quote(gw, [(p1, 1)], "EUR")
        assert down.status_code == 503, down.text  # the checkout page says "unavailable"
        r = place(gw, shopper, order_body(shopper, [(p1, 1)], "EUR", q["id"]))
    finally:
        stack.start("shipping")
    assert r.status_code == 200, r.text
    order = r.json()["order"]
    (default_eur,) = convert(
        gw, [{"currency_code": "USD", "units": "9", "nanos": 900_000_000}], "EUR",
        int(order["rate_version"]),
    )  # fmt: skip
    assert order["currency_code"] == "EUR" and order.get("shipping_quote_id", "") == ""
    assert order["shipping_cost"] == default_eur  # ORDER_DEFAULT_SHIPPING, converted


def test_dead_currency_places_the_order_in_the_catalog_currency(stack, gw, shopper, products):
    p1, _ = products
    stack.stop("currency")
    try:
        r = place(gw, shopper, order_body(shopper, [(p1, 1)], "EUR"))
    finally:
        stack.start("currency")
    assert r.status_code == 200, r.text
    order = r.json()["order"]
    assert order["currency_code"] == "USD" and int(order.get("rate_version", 0)) == 0
    assert nanos(order["converted_total"]) == 89 * 10**9
    assert nanos(order["shipping_cost"]) == 9_900_000_000
    assert nanos(order["grand_total"]) == 98_900_000_000


def test_the_confirmation_email_charges_in_the_shoppers_currency(stack, gw, shopper, products):
    stack.require("notification", "smtp-sink")
    p1, _ = products
    q = quote(gw, [(p1, 1)], "EUR").json()["quote"]
    r = place(gw, shopper, order_body(shopper, [(p1, 1)], "EUR", q["id"]))
    assert r.status_code == 200, r.text
    order = r.json()["order"]
    items = nanos(order["converted_total"])
    expected = f"EUR {items // 10**9}.{items % 10**9 // 10**7:02d}"
    deadline = time.monotonic() + 60
    found = None
    while found is None and time.monotonic() < deadline:
        got = httpx.get(f"{stack.smtp_http}/messages", params={"to": shopper["email"]}, timeout=5)
        found = next((m for m in got.json() if order["id"][:8] in m["subject"]), None)
        if found is None:
            time.sleep(0.5)
    assert found is not None, "no confirmation email"
    assert expected in found["subject"], found["subject"]  # "... total EUR 81.88"
