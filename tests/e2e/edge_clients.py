"""Test-side helpers for the edge contract tests (test_edge_replies, test_connect,
test_openapi_contract): fresh shoppers with tokens, a private loopback address, the three
protocols' request headers and the checks of each protocol's error shape."""

from __future__ import annotations

import secrets
import urllib.parse
import uuid

import h11
import httpx
from google.rpc import code_pb2

GRPC_WEB = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
CONNECT_JSON = {"content-type": "application/json", "connect-protocol-version": "1"}
EMPTY_FRAME = b"\x00\x00\x00\x00\x00"
SHIPPING = {
    "recipient_name": "Edge Tester",
    "line1": "1 Main St",
    "city": "Springfield",
    "postal_code": "12345",
    "country_code": "US",
}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def register_and_login(gw: httpx.Client) -> dict:
    """A new shopper: {email, password, user_id, access_token, refresh_token, ...}."""
    email = f"edge-{uuid.uuid4().hex[:12]}@example.com"
    password = "Pw-" + secrets.token_hex(8)
    r = gw.post("/api/v1/users", json={"email": email, "password": password, "display_name": "E"})
    assert r.status_code == 200, r.text
    r = gw.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"email": email, "password": password, **r.json()["tokens"]}


def place_order(gw: httpx.Client, who: dict) -> dict:
    """One order of one in-stock demo product for `who` (REST)."""
    products = gw.get("/api/v1/products", params={"page_size": 50}).json()["products"]
    in_stock = [p for p in products if int(p.get("stock", 0) or 0) > 5]
    assert in_stock, "demo catalog has no product in stock"
    body = {
        "user_id": who["user_id"],
        "idempotency_key": uuid.uuid4().hex,
        "lines": [{"product_id": in_stock[0]["id"], "quantity": 1}],
        "shipping_address": SHIPPING,
    }
    r = gw.post("/api/v1/orders", json=body, headers=bearer(who["access_token"]))
    assert r.status_code == 200, r.text
    return r.json()["order"]


def private_loopback() -> str:
    """A random 127.0.0.0/8 address: NGINX's rate limit and the auth service's throttle key
    on it are this caller's alone, so nobody else on 127.0.0.1 is slowed or locked out."""
    return "127." + ".".join(str(secrets.randbelow(250) + 1) for _ in range(3))


# ------------------------------------------------------------------ error shapes


def code_name(code: int) -> str:
    return code_pb2.Code.Name(code).lower()


def assert_rest_error(r: httpx.Response, http: int, code: int, *words: str) -> dict:
    """google.rpc.Status JSON with the matching HTTP status; the message names `words`."""
    assert r.status_code == http, (r.status_code, r.headers, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["code"] == code, body
    for word in words:
        assert word in body["message"], body
    return body


def assert_connect_error(r: httpx.Response, http: int, code: int, *words: str) -> dict:
    """Connect's error JSON: the code's name in lower case, with the HTTP status."""
    assert r.status_code == http, (r.status_code, r.headers, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["code"] == code_name(code), body
    for word in words:
        assert word in body["message"], body
    return body


def assert_grpc_web_error(r: httpx.Response, code: int, *words: str) -> str:
    """grpc-status (and grpc-message) in the headers of a trailers-only gRPC-Web reply."""
    assert r.headers["content-type"].startswith("application/grpc-web"), (r.headers, r.text)
    assert r.headers.get("grpc-status") == str(code), (r.status_code, r.headers)
    message = urllib.parse.unquote(r.headers.get("grpc-message", ""))
    for word in words:
        assert word in message, message
    return message


# ------------------------------------------------------------------ pipelined bursts


def pipelined(
    base_url: str, source: str, request: bytes, n: int
) -> list[tuple[int, dict[str, str], bytes]]:
    """`n` copies of one raw HTTP/1.1 request pipelined on one connection from `source`:
    as fast as NGINX can take them, whatever the speed of a Python client on a busy
    machine. Returns (status, headers, body) of each response."""
    import socket

    url = urllib.parse.urlsplit(base_url)
    addr = (url.hostname, url.port)
    out: list[tuple[int, dict[str, str], bytes]] = []
    with socket.create_connection(addr, timeout=30, source_address=(source, 0)) as sock:
        sock.sendall(request * n)
        conn = h11.Connection(h11.CLIENT)
        # h11 follows one exchange at a time: tell it about each request we pipelined.
        conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
        conn.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        while len(out) < n:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                if not data:
                    break
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                body = b""
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                out.append((status, headers, body))
                if conn.their_state is not h11.DONE or conn.our_state is not h11.DONE:
                    break
                conn.start_next_cycle()
                conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
                conn.send(h11.EndOfMessage())
            else:
                break
    return out
