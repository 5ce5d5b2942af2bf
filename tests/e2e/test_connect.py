"""The Connect protocol at the gateway (mesh/connect.py), through the running NGINX and
Envoy to the real services: `buf curl --protocol connect` (Connect-Go, binary protobuf) as a
user would run it, and Connect JSON and GET requests written out by hand."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2

import shop.product.v1.product_pb2 as ppb
from mesh.generate import DESCRIPTOR
from mesh.testing import BUF
from tests.e2e.edge_clients import (
    CONNECT_JSON,
    assert_connect_error,
    bearer,
    place_order,
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
    who = register_and_login(gw)
    who["orders"] = [place_order(gw, who)["id"] for _ in range(2)]
    return who


def buf_curl(url: str, data: dict, *headers: str) -> tuple[int, dict]:
    """Runs `buf curl --protocol connect` against `url`: (exit code, the JSON it printed
    (the reply on stdout, or the Connect error on stderr))."""
    argv = [str(BUF), "curl", "--protocol", "connect", "--schema", str(DESCRIPTOR), url]
    argv += ["-d", json.dumps(data)]
    for h in headers:
        argv += ["-H", h]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    text = done.stdout if done.returncode == 0 else done.stderr
    return done.returncode, json.loads(text)


def test_buf_curl_gets_a_product(gw: httpx.Client) -> None:
    code, reply = buf_curl(f"{gw.base_url}{PRODUCT}/GetProduct", {"id": "p-0001"})
    assert code == 0, reply
    assert reply["product"]["id"] == "p-0001"
    rest = gw.get("/api/v1/products/p-0001").json()["product"]
    assert reply["product"]["name"] == rest["name"]
    assert reply["product"]["price"]["currencyCode"] == rest["price"]["currency_code"]


def test_buf_curl_with_a_shopper_token_lists_that_shoppers_orders(
    gw: httpx.Client, shopper: dict
) -> None:
    code, reply = buf_curl(
        f"{gw.base_url}{ORDER}/ListOrders",
        {"userId": shopper["user_id"], "pageSize": 100},
        f"Authorization: Bearer {shopper['access_token']}",
    )
    assert code == 0, reply
    orders = reply["orders"]
    assert {o["id"] for o in orders} == set(shopper["orders"])
    assert {o["userId"] for o in orders} == {shopper["user_id"]}
    rest = gw.get(
        "/api/v1/orders",
        params={"user_id": shopper["user_id"], "page_size": 100},
        headers=bearer(shopper["access_token"]),
    ).json()
    assert sorted(o["id"] for o in rest["orders"]) == sorted(o["id"] for o in orders)


def test_buf_curl_without_a_token_is_unauthenticated(gw: httpx.Client, shopper: dict) -> None:
    code, err = buf_curl(f"{gw.base_url}{ORDER}/ListOrders", {"userId": shopper["user_id"]})
    assert code != 0
    assert err["code"] == "unauthenticated"
    # Envoy's own reply, read as Connect error JSON (not guessed from the HTTP status).
    assert "Jwt is missing" in err["message"] and "Authorization: Bearer" in err["message"]


def test_buf_curl_reads_a_services_error_with_its_code(gw: httpx.Client) -> None:
    code, err = buf_curl(f"{gw.base_url}{PRODUCT}/GetProduct", {"id": "no-such-product"})
    assert code != 0 and err["code"] == "not_found", err


def test_connect_json_round_trip(gw: httpx.Client) -> None:
    r = gw.post(f"{PRODUCT}/GetProduct", json={"id": "p-0001"}, headers=CONNECT_JSON)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    reply = json_format.Parse(r.text, ppb.GetProductResponse())  # protojson, camelCase
    assert reply.product.id == "p-0001" and "imageUrls" in r.json()["product"]


def test_connect_json_error_carries_the_field_violations(gw: httpx.Client) -> None:
    r = gw.post(
        "/api/shop.user.v1.UserService/RegisterUser",
        json={"email": "not-an-email", "password": "x", "displayName": ""},
        headers=CONNECT_JSON,
    )
    body = assert_connect_error(r, 400, code_pb2.INVALID_ARGUMENT, "email")
    (detail,) = body["details"]
    assert detail["type"].endswith("google.rpc.BadRequest")
    bad = error_details_pb2.BadRequest.FromString(base64.b64decode(detail["value"] + "=="))
    assert {v.field for v in bad.field_violations} >= {"email", "password", "display_name"}


def test_connect_proto_error_is_connect_json(gw: httpx.Client) -> None:
    r = gw.post(
        f"{PRODUCT}/GetProduct",
        content=ppb.GetProductRequest(id="no-such-product").SerializeToString(),
        headers={"content-type": "application/proto", "connect-protocol-version": "1"},
    )
    assert_connect_error(r, 404, code_pb2.NOT_FOUND, "no-such-product")


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_connect_get_reads_a_product(gw: httpx.Client, encoding: str) -> None:
    req = ppb.GetProductRequest(id="p-0002")
    if encoding == "proto":
        message = base64.urlsafe_b64encode(req.SerializeToString()).decode().rstrip("=")
        params = {"connect": "v1", "encoding": "proto", "base64": "1", "message": message}
    else:
        message = json_format.MessageToJson(req, indent=None)
        params = {"connect": "v1", "encoding": "json", "message": message}
    # Percent-encoded as Connect clients do (RFC 3986: a space is %20, "+" is a plus).
    query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    r = gw.get(f"{PRODUCT}/GetProduct?{query}")
    assert r.status_code == 200, r.text
    if encoding == "proto":
        assert r.headers["content-type"] == "application/proto"
        reply = ppb.GetProductResponse.FromString(r.content)
    else:
        reply = json_format.Parse(r.text, ppb.GetProductResponse())
    assert reply.product.id == "p-0002"
