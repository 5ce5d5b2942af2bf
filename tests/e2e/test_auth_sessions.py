"""Sessions end to end: refresh rotation and reuse detection, logout, login failures that
look alike, account and client throttling, and no password in any log or response.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.auth.config import AuthServiceConfig
from services.auth.domain import account_key, address_key
from stack.model import state_dir
from stack.testing import StackHandle
from tests.e2e.auth_accounts import PASSWORD, _run_in_thread, bearer, register_and_login

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]


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
