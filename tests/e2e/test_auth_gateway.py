"""Authentication and access end to end: NGINX -> Envoy (jwt_authn, RBAC) -> services (the
runtime's own token check), with the real auth, user, product and order services.

Protected methods are enumerated from the schema (gen/descriptor), so a new user/admin
method is covered without touching this file. Tokens with a bad expiry or audience are
minted with the auth service's real current key (unsealed with the dev key-encryption key),
so each test fails for exactly the reason it names.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import secrets
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from mesh.api import load
from mesh.generate import DESCRIPTOR
from services.auth.config import DEV_KEK, AuthServiceConfig
from services.auth.domain import account_key, address_key
from services.auth.keys import parse_kek, unseal
from services.runtime.auth import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    PAYLOAD_HEADER,
    b64url,
    sign,
)
from shop.order.v1 import order_grpc
from shop.order.v1 import order_pb2 as opb
from shop.product.v1 import product_grpc
from shop.product.v1 import product_pb2 as ppb
from shop.topology import SERVICES
from stack.callers import service_bearer
from stack.model import state_dir
from stack.testing import StackHandle

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

API = load(DESCRIPTOR)
PASSWORD = "Pw-" + secrets.token_hex(8)  # distinctive: grepped for in the logs
GRPC_WEB = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
EMPTY_FRAME = b"\x00\x00\x00\x00\x00"


@pytest.fixture(scope="module")
def gw(stack: StackHandle) -> httpx.Client:
    stack.require("nginx", "auth", "user", "product", "order")
    with httpx.Client(base_url=stack.nginx_url, timeout=15) as client:
        yield client


def register_and_login(gw: httpx.Client) -> dict:
    email = f"auth-e2e-{uuid.uuid4().hex[:10]}@example.com"
    r = gw.post("/api/v1/users", json={"email": email, "password": PASSWORD, "display_name": "E"})
    assert r.status_code == 200, r.text
    r = gw.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"email": email, **r.json()["tokens"]}


@pytest.fixture(scope="module")
def alice(gw: httpx.Client) -> dict:
    return register_and_login(gw)


@pytest.fixture(scope="module")
def bob(gw: httpx.Client) -> dict:
    return register_and_login(gw)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def signing_key(stack: StackHandle, alice: dict):
    """The auth service's key that signed alice's token, unsealed with the dev KEK."""
    kid = _header(alice["access_token"])["kid"]

    async def fetch():
        conn = await asyncpg.connect(stack.pg_dsn("auth"))
        try:
            return await conn.fetchval("SELECT sealed FROM signing_keys WHERE kid = $1", kid)
        finally:
            await conn.close()

    sealed = asyncio.run(fetch()) if not _loop_running() else _run_in_thread(fetch)
    return kid, unseal(parse_kek(DEV_KEK), kid, bytes(sealed))


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_thread(fn):  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fn()).result()


def _header(token: str) -> dict:
    import base64
    import json

    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))


def mint(signing_key, sub: str, **over) -> str:  # type: ignore[no-untyped-def]
    kid, key = signing_key
    now = int(time.time())
    claims = {
        "iss": DEFAULT_ISSUER,
        "aud": DEFAULT_AUDIENCE,
        "sub": sub,
        "roles": ["customer"],
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        **over,
    }
    return sign(claims, key, kid)


def _rest_path(template: str) -> str:
    return re.sub(r"{[^}]+}", "x1", template)


# ---------------------------------------------------------------- every protected method


PROTECTED = [m for m in API.methods if m.access in ("user", "admin")]
INTERNAL = [m for m in API.methods if m.access == "internal"]


def test_the_schema_has_protected_methods() -> None:
    assert len(PROTECTED) >= 10 and INTERNAL  # a broken descriptor must not pass vacuously


@pytest.mark.parametrize("method", PROTECTED, ids=lambda m: m.grpc_path)
def test_no_token_is_unauthenticated_on_every_protected_method(gw: httpx.Client, method) -> None:
    r = gw.post("/api" + method.grpc_path, content=EMPTY_FRAME, headers=GRPC_WEB)
    assert r.headers.get("grpc-status") == "16", (r.status_code, r.headers)
    for rule in method.http:
        r = gw.request(rule.verb.upper(), _rest_path(rule.path), json={} if rule.body else None)
        assert r.status_code == 401, (rule.verb, rule.path, r.status_code, r.text)


@pytest.mark.parametrize("method", INTERNAL, ids=lambda m: m.grpc_path)
def test_internal_methods_are_refused_at_the_edge_even_with_a_service_token(
    gw: httpx.Client, method
) -> None:
    # The token of the very service the schema names as its caller: still not at the edge.
    headers = {**GRPC_WEB, **service_bearer(method.callers[0])}
    r = gw.post("/api" + method.grpc_path, content=EMPTY_FRAME, headers=headers)
    assert r.headers.get("grpc-status") == "7", (r.status_code, r.headers)


# ---------------------------------------------------------------- bad tokens


def test_valid_token_reaches_a_user_method(gw: httpx.Client, alice: dict) -> None:
    r = gw.get(f"/api/v1/users/{alice['user_id']}", headers=bearer(alice["access_token"]))
    assert r.status_code == 200 and r.json()["user"]["email"] == alice["email"]


def test_bad_tokens_are_rejected_at_the_edge(gw: httpx.Client, alice: dict, signing_key) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    uid = alice["user_id"]
    kid = signing_key[0]
    bad = {
        "expired": mint(signing_key, uid, iat=int(time.time()) - 4000, exp=int(time.time()) - 3000),
        "wrong audience": mint(signing_key, uid, aud="someone-else"),
        "wrong issuer": mint(signing_key, uid, iss="https://evil.example"),
        "wrong signature": mint((kid, Ed25519PrivateKey.generate()), uid),
        "alg none": b64url(b'{"alg":"none","kid":"%s"}' % kid.encode())
        + "."
        + alice["access_token"].split(".")[1]
        + ".",
        "garbage": "not-a-jwt",
    }
    for why, token in bad.items():
        r = gw.get(f"/api/v1/users/{uid}", headers=bearer(token))
        # Envoy answers a valid signature for another audience with 403, the rest with 401.
        expected = (401, 403) if why == "wrong audience" else (401,)
        assert r.status_code in expected, (why, r.status_code, r.text)
    # The control: the same key and claims, correctly formed, are accepted.
    assert gw.get(f"/api/v1/users/{uid}", headers=bearer(mint(signing_key, uid))).status_code == 200


def test_public_methods_ignore_a_stale_token(gw: httpx.Client) -> None:
    """Documented choice: a token on a public method is not examined (edge and runtime)."""
    r = gw.get("/api/v1/products", headers=bearer("stale.or.garbage"))
    assert r.status_code == 200, r.text


def test_admin_methods_need_the_admin_role(gw: httpx.Client, alice: dict) -> None:
    r = gw.post("/api/v1/products", json={}, headers=bearer(alice["access_token"]))
    assert r.status_code == 403, r.text


def test_client_sent_claims_header_is_ignored(gw: httpx.Client, alice: dict) -> None:
    forged = b64url(b'{"sub":"root","roles":["admin"],"iss":"%s"}' % DEFAULT_ISSUER.encode())
    # No token: the forged claims do not authenticate anyone.
    r = gw.get(f"/api/v1/users/{alice['user_id']}", headers={PAYLOAD_HEADER: forged})
    assert r.status_code == 401
    # A customer's token plus forged admin claims: still not an admin.
    headers = {PAYLOAD_HEADER: forged, **bearer(alice["access_token"])}
    assert gw.post("/api/v1/products", json={}, headers=headers).status_code == 403


def test_forged_claims_for_another_user_beside_a_valid_token_grant_nothing(
    gw: httpx.Client, alice: dict, bob: dict
) -> None:
    """A user-level method with alice's valid token and forged claims saying she is bob and
    an admin: the services act on the verified token only, so bob's profile, orders and
    addresses stay closed to her, and a catalog write is still refused."""
    claims = {"iss": DEFAULT_ISSUER, "aud": DEFAULT_AUDIENCE, "sub": bob["user_id"]}
    forged = b64url(json.dumps({**claims, "roles": ["customer", "admin"]}).encode())
    headers = {PAYLOAD_HEADER: forged, **bearer(alice["access_token"])}
    for path, params in (
        (f"/api/v1/users/{bob['user_id']}", None),
        (f"/api/v1/users/{bob['user_id']}/addresses", None),
        ("/api/v1/orders", {"user_id": bob["user_id"]}),
    ):
        r = gw.get(path, params=params, headers=headers)
        assert r.status_code in (403, 404), (path, r.status_code, r.text)
    r = gw.post("/api/v1/products", json={"sku": "FORGED-1", "name": "x"}, headers=headers)
    assert r.status_code == 403, r.text
    # The control: the same token on alice's own profile works, forged header or not.
    r = gw.get(f"/api/v1/users/{alice['user_id']}", headers=headers)
    assert r.status_code == 200 and r.json()["user"]["email"] == alice["email"], r.text


def test_jwks_is_served_at_the_well_known_path_with_public_keys_only(
    gw: httpx.Client, alice: dict
) -> None:
    keys = gw.get("/.well-known/jwks.json").json()["keys"]
    kid = _header(alice["access_token"])["kid"]
    mine = [k for k in keys if k["kid"] == kid]
    assert mine and mine[0]["alg"] == "EdDSA" and mine[0]["crv"] == "Ed25519"
    assert all("d" not in k for k in keys)


# ---------------------------------------------------------------- ownership


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


# ---------------------------------------------------------------- sessions


def _reuse_grace_s() -> float:
    """The auth service's reuse window, as the running stack has it (config default)."""
    fields = {f.name: f for f in dataclasses.fields(AuthServiceConfig)}
    return float(
        os.environ.get("AUTH_REFRESH_REUSE_GRACE_S", fields["refresh_reuse_grace_s"].default)
    )


def test_refresh_rotates_and_reuse_revokes_the_family(gw: httpx.Client) -> None:
    s = register_and_login(gw)
    r1 = gw.post("/api/v1/auth/refresh", json={"refresh_token": s["refresh_token"]})
    assert r1.status_code == 200
    new = r1.json()["tokens"]
    assert new["refresh_token"] != s["refresh_token"]
    assert gw.get(f"/api/v1/users/{s['user_id']}", headers=bearer(new["access_token"])).is_success
    time.sleep(_reuse_grace_s() + 1)  # past the reload-race window: this is a replay
    reuse = gw.post("/api/v1/auth/refresh", json={"refresh_token": s["refresh_token"]})
    assert reuse.status_code == 401
    after = gw.post("/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert after.status_code == 401  # the successor died with its family


def test_a_refresh_repeated_within_the_grace_window_keeps_the_session(gw: httpx.Client) -> None:
    """A reload that aborted an in-flight refresh presents the old token again at once."""
    s = register_and_login(gw)
    r1 = gw.post("/api/v1/auth/refresh", json={"refresh_token": s["refresh_token"]})
    r2 = gw.post("/api/v1/auth/refresh", json={"refresh_token": s["refresh_token"]})
    assert r1.status_code == r2.status_code == 200
    again = r2.json()["tokens"]
    assert gw.get(f"/api/v1/users/{s['user_id']}", headers=bearer(again["access_token"])).is_success
    nxt = gw.post("/api/v1/auth/refresh", json={"refresh_token": again["refresh_token"]})
    assert nxt.status_code == 200


def test_logout_ends_the_session(gw: httpx.Client) -> None:
    s = register_and_login(gw)
    assert gw.post("/api/v1/auth/logout", json={"refresh_token": s["refresh_token"]}).is_success
    assert gw.post("/api/v1/auth/logout", json={"refresh_token": s["refresh_token"]}).is_success
    r = gw.post("/api/v1/auth/refresh", json={"refresh_token": s["refresh_token"]})
    assert r.status_code == 401


def test_unknown_email_and_wrong_password_look_the_same(gw: httpx.Client, alice: dict) -> None:
    a = gw.post("/api/v1/auth/login", json={"email": alice["email"], "password": "wrong-1"})
    b = gw.post("/api/v1/auth/login", json={"email": "nobody-" + alice["email"], "password": "x"})
    assert a.status_code == b.status_code == 401
    assert a.json()["message"] == b.json()["message"]


def test_repeated_failures_lock_the_account(gw: httpx.Client) -> None:
    s = register_and_login(gw)
    for _ in range(5):
        r = gw.post("/api/v1/auth/login", json={"email": s["email"], "password": "nope"})
        assert r.status_code == 401
    r = gw.post("/api/v1/auth/login", json={"email": s["email"], "password": PASSWORD})
    assert r.status_code == 401 and "too many" in r.json()["message"], r.text


def _secret(n: int) -> str:
    """A password nothing else in a log can contain: no hex digits (trace and span ids are
    hex) and a fixed marker."""
    return "Zq" + "".join(secrets.choice("ghjkmnpqrstvwxyzGHJKMNPQRSTVWXYZ") for _ in range(n - 2))


def _auth_setting(name: str) -> float:
    """An auth service setting as the running stack has it (env, else the default)."""
    default = {f.name: f.default for f in dataclasses.fields(AuthServiceConfig)}[name]
    return float(os.environ.get(f"AUTH_{name.upper()}", default))


async def _forget_throttle(dsn: str, keys: list[str]) -> dict[str, int]:
    """Delete the test's throttle rows; returns their failure counts."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "DELETE FROM login_throttle WHERE key = ANY($1::text[]) RETURNING key, failures", keys
        )
    finally:
        await conn.close()
    return {r["key"]: r["failures"] for r in rows}


def _private_loopback() -> str:
    """A random 127.0.0.0/8 address: NGINX sees it as $remote_addr, so the auth service's
    per-client throttle key is this caller's alone."""
    return "127." + ".".join(str(secrets.randbelow(250) + 1) for _ in range(3))


def test_failures_across_many_accounts_throttle_the_client(
    gw: httpx.Client, stack: StackHandle
) -> None:
    """Guessing one password per account over many accounts never trips an account lock;
    the per-client counter catches it. The client connects from its own loopback address
    (127.x.y.z, so NGINX's $remote_addr and the throttle key are this test's alone, and no
    other caller on 127.0.0.1 is locked out) and sends a different x-forwarded-for every
    time, which NGINX overwrites. After the client's free failures, even a right password
    from it is refused, while the same account from another client signs in."""
    free = int(_auth_setting("address_free_failures"))
    host = _private_loopback()
    victim = register_and_login(gw)
    emails = [f"nobody-{uuid.uuid4().hex[:12]}@example.com" for _ in range(free)]
    keys = [address_key(host), *(account_key(e) for e in emails)]
    transport = httpx.HTTPTransport(local_address=host)
    try:
        with httpx.Client(base_url=str(gw.base_url), transport=transport, timeout=15) as me:
            for i, email in enumerate(emails):
                spoof = f"203.0.113.{i % 250 + 1}"
                r = me.post(
                    "/api/v1/auth/login",
                    json={"email": email, "password": "wrong-" + str(i)},
                    headers={"x-forwarded-for": spoof, "x-real-ip": spoof},
                )
                # Each failure is a plain one until the client has used up its free ones.
                assert r.status_code == 401, (i, r.text)
                assert r.json()["message"] == "invalid email or password", (i, r.text)
            r = me.post("/api/v1/auth/login", json={"email": victim["email"], "password": PASSWORD})
            assert r.status_code == 401, r.text
            assert r.json()["message"].startswith("too many sign-in attempts"), r.text
        # Per client, not per account: the same account from another client is fine.
        r = gw.post("/api/v1/auth/login", json={"email": victim["email"], "password": PASSWORD})
        assert r.status_code == 200, r.text
    finally:
        transport.close()
        failures = _run_in_thread(lambda: _forget_throttle(stack.pg_dsn("auth"), keys))
    # The counter that locked is the one keyed by the address NGINX saw, none of the spoofs.
    assert failures[address_key(host)] == free, failures
    assert all(failures[account_key(e)] == 1 for e in emails), failures


# How the runtime logs a registration the user service refused (services/runtime/server.py).
REFUSED_REGISTRATION = '"/shop.user.v1.UserService/RegisterUser", "code": "INVALID_ARGUMENT"'


def _log_tails() -> dict[str, tuple[Path, int]]:
    """The auth and user service logs, which must exist, and where each ends now."""
    logs = state_dir() / "logs"
    out = {}
    for name in ("auth", "user"):
        path = logs / f"{name}.log"
        assert path.is_file() and path.stat().st_size > 0, f"{path} missing or empty"
        out[name] = (path, path.stat().st_size)
    return out


def _written_since(path: Path, offset: int) -> str:
    with path.open("rb") as f:
        if path.stat().st_size < offset:  # rotated or truncated by a restart: read it all
            offset = 0
        f.seek(offset)
        return f.read().decode(errors="replace")


def test_password_never_appears_in_logs_or_responses(gw: httpx.Client, alice: dict) -> None:
    """A successful login, failed logins (wrong password, unknown email) and refused
    registrations (password too short, too long, bad email) each carry a password nothing
    else contains; none comes back in a response or reaches the auth or user service log,
    though both logs record these very calls."""
    tails = _log_tails()
    wrong, unknown, short, too_long, with_bad_email = (
        _secret(16), _secret(16), _secret(7), _secret(129), _secret(16),
    )  # fmt: skip
    fresh = f"auth-e2e-{uuid.uuid4().hex[:10]}@example.com"
    calls = [
        ("login ok", "/api/v1/auth/login", {"email": alice["email"], "password": PASSWORD}, 200),
        ("wrong password", "/api/v1/auth/login", {"email": alice["email"], "password": wrong}, 401),
        ("unknown email", "/api/v1/auth/login",
         {"email": "nobody-" + alice["email"], "password": unknown}, 401),
        ("too short", "/api/v1/users",
         {"email": fresh, "password": short, "display_name": "E"}, 400),
        ("too long", "/api/v1/users",
         {"email": fresh, "password": too_long, "display_name": "E"}, 400),
        ("bad email", "/api/v1/users",
         {"email": "not an email", "password": with_bad_email, "display_name": "E"}, 400),
    ]  # fmt: skip
    # From a loopback address of its own: the failed logins count against this test's
    # client, not against 127.0.0.1, which every other caller of the stack shares.
    host = _private_loopback()
    with httpx.Client(
        base_url=str(gw.base_url), transport=httpx.HTTPTransport(local_address=host), timeout=15
    ) as me:
        responses = [(call, me.post(call[1], json=call[2])) for call in calls]
    for (why, _, body, status), r in responses:
        assert r.status_code == status, (why, r.status_code, r.text)
        assert body["password"] not in r.text, why
        assert all(body["password"] not in v for v in r.headers.values()), why
        if why.startswith("too"):  # refused for the password itself, which is named only
            assert r.json()["message"].startswith("password:"), (why, r.text)
    passwords = [body["password"] for _, _, body, _ in calls]
    deadline = time.monotonic() + 5
    while True:  # log lines are flushed per line; give the processes a moment
        written = {name: _written_since(*tail) for name, tail in tails.items()}
        logins = written["auth"].count("/shop.auth.v1.AuthService/Login")
        refused = written["user"].count(REFUSED_REGISTRATION)
        if (logins >= 3 and refused >= 3) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # The logs we read are the live ones: they recorded the calls just made.
    assert logins >= 3, written["auth"][-2000:]
    assert refused >= 3, written["user"][-2000:]
    assert "/shop.user.v1.UserService/CheckCredentials" in written["user"]
    for name, text in written.items():
        for pw in passwords:
            assert pw not in text, (name, pw)
    logs = state_dir() / "logs"
    for name in ("envoy", "nginx"):
        path = logs / f"{name}.log"
        if path.exists():  # the gateway's own logs, when this stack writes them
            text = path.read_text(errors="replace")
            assert not [pw for pw in passwords if pw in text], name
    for path in (state_dir() / "nginx" / "logs").glob("*.log"):
        text = path.read_text(errors="replace")
        assert not [pw for pw in passwords if pw in text], path


# ---------------------------------------------------------------- direct calls (no Envoy)


async def test_direct_calls_without_a_token_are_refused(alice: dict) -> None:
    order_ch = Channel("127.0.0.1", SERVICES["order"].port)
    product_ch = Channel("127.0.0.1", SERVICES["product"].port)
    try:
        orders = order_grpc.OrderServiceStub(order_ch)
        with pytest.raises(GRPCError) as exc:
            await orders.ListOrders(opb.ListOrdersRequest(user_id=alice["user_id"]))
        assert exc.value.status is Status.UNAUTHENTICATED
        products = product_grpc.ProductServiceStub(product_ch)
        req = ppb.ReserveStockRequest(order_id="o-x")
        with pytest.raises(GRPCError) as exc:
            await products.ReserveStock(req)
        assert exc.value.status is Status.UNAUTHENTICATED
        with pytest.raises(GRPCError) as exc:  # a user's token is not a service identity
            await products.ReserveStock(req, metadata=bearer(alice["access_token"]))
        assert exc.value.status is Status.PERMISSION_DENIED
        with pytest.raises(GRPCError) as exc:  # forged claims header, no token
            await orders.ListOrders(
                opb.ListOrdersRequest(user_id=alice["user_id"]),
                metadata={PAYLOAD_HEADER: b64url(b'{"sub":"x","roles":["admin"]}')},
            )
        assert exc.value.status is Status.UNAUTHENTICATED
        # A service identity opens only what the schema grants it: ListOrders names no
        # service (notification may read one order, GetOrder, not list a user's).
        for name in ("notification", "order"):
            with pytest.raises(GRPCError) as exc:
                await orders.ListOrders(
                    opb.ListOrdersRequest(user_id=alice["user_id"]), metadata=service_bearer(name)
                )
            assert exc.value.status is Status.PERMISSION_DENIED, name
        # The owner's own token passes the same check.
        reply = await orders.ListOrders(
            opb.ListOrdersRequest(user_id=alice["user_id"]), metadata=bearer(alice["access_token"])
        )
        assert reply is not None
    finally:
        order_ch.close()
        product_ch.close()


def test_read_your_writes_through_the_gateway_with_the_lsn_echo(gw: httpx.Client) -> None:
    """What the storefront does (frontend/src/api/transport.ts): a write over gRPC-Web comes
    back with its commit LSN in the x-shop-lsn trailer, and echoing it on the next read makes
    that read see the write, though reads go to the replica. Each update is read back at
    once, no polling, 15 times."""
    from mesh.testing import GRPC_WEB_HEADERS, grpc_web_parse, grpc_web_request
    from services.runtime.context import LSN_HEADER, parse_lsn
    from shop.user.v1 import user_pb2 as upb

    who = register_and_login(gw)
    svc = "/api/shop.user.v1.UserService"

    def call(method: str, req, reply_cls, lsn: str = ""):  # type: ignore[no-untyped-def]
        headers = {**GRPC_WEB_HEADERS, **bearer(who["access_token"])}
        if lsn:
            headers[LSN_HEADER] = lsn
        r = gw.post(f"{svc}/{method}", content=grpc_web_request(req.SerializeToString()),
                    headers=headers)  # fmt: skip
        assert r.status_code == 200, r.text
        messages, trailers = grpc_web_parse(r.content, dict(r.headers))
        assert trailers.get("grpc-status") == "0", trailers
        return reply_cls.FromString(messages[0]), trailers

    lsns = []
    for i in range(15):
        name = f"Echo {i} {uuid.uuid4().hex[:6]}"
        _, trailers = call(
            "UpdateProfile",
            upb.UpdateProfileRequest(id=who["user_id"], display_name=name),
            upb.UpdateProfileResponse,
        )
        lsn = trailers.get(LSN_HEADER, "")
        assert lsn, f"no {LSN_HEADER} trailer reached the client: {trailers}"
        lsns.append(parse_lsn(lsn))
        got, _ = call(
            "GetUser", upb.GetUserRequest(id=who["user_id"]), upb.GetUserResponse, lsn=lsn
        )
        assert got.user.display_name == name, f"read {i} did not see its own write"
    assert lsns == sorted(lsns), "commit LSNs go forward"
