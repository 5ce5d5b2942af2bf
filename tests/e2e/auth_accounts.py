"""What the auth end-to-end tests share: the gateway client, two registered shoppers
(alice, bob), tokens minted with the auth service's real current key, and the schema's
methods (so a new protected method is covered without touching a test).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid

import asyncpg
import httpx
import pytest

from mesh.api import load
from mesh.generate import DESCRIPTOR
from services.auth.config import DEV_KEK
from services.auth.keys import parse_kek, unseal
from services.runtime.auth import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    sign,
)
from stack.testing import StackHandle

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
