"""The ops page's Prometheus proxy through the real gateway: NGINX asks Envoy (JWT + admin
role) before forwarding a query; nothing else of Prometheus is reachable."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid

import asyncpg
import httpx
import pytest

from services.auth.config import DEV_KEK
from services.auth.keys import parse_kek, unseal
from services.runtime.auth import DEFAULT_AUDIENCE, DEFAULT_ISSUER, sign
from stack.testing import StackHandle

pytestmark = pytest.mark.stack

QUERY = "/api/ops/prometheus/query"


@pytest.fixture(scope="module")
def gw(stack: StackHandle):
    stack.require("nginx", "auth", "user", "prometheus")
    with httpx.Client(base_url=stack.nginx_url, timeout=15) as client:
        yield client


@pytest.fixture(scope="module")
def customer(gw: httpx.Client) -> str:
    email, password = f"ops-{uuid.uuid4().hex[:10]}@example.com", "Pw-" + secrets.token_hex(8)
    r = gw.post("/api/v1/users", json={"email": email, "password": password, "display_name": "O"})
    assert r.status_code == 200, r.text
    r = gw.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["tokens"]["access_token"]


def admin_token(stack: StackHandle, customer: str) -> str:
    """An admin token signed with the auth service's current key (dev KEK)."""
    head = customer.split(".")[0]
    kid = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]

    async def fetch() -> bytes:
        conn = await asyncpg.connect(stack.pg_dsn("auth"))
        try:
            return await conn.fetchval("SELECT sealed FROM signing_keys WHERE kid = $1", kid)
        finally:
            await conn.close()

    key = unseal(parse_kek(DEV_KEK), kid, bytes(asyncio.run(fetch())))
    now = int(time.time())
    claims = {
        "iss": DEFAULT_ISSUER, "aud": DEFAULT_AUDIENCE, "sub": f"ops-{uuid.uuid4().hex[:8]}",
        "roles": ["admin"], "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex,
    }  # fmt: skip
    return sign(claims, key, kid)


def test_ops_proxy_needs_an_admin_token(stack, gw: httpx.Client, customer: str):
    assert gw.get(QUERY, params={"query": "up"}).status_code == 401
    bearer = {"authorization": f"Bearer {customer}"}
    assert gw.get(QUERY, params={"query": "up"}, headers=bearer).status_code == 403
    admin = {"authorization": f"Bearer {admin_token(stack, customer)}"}
    r = gw.get(QUERY, params={"query": "up"}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "success"
    # Only the query API: Prometheus' config, targets and admin API stay out of reach.
    for path in ("/api/ops/prometheus/api/v1/status/config", "/api/ops/prometheus/targets"):
        assert gw.get(path, headers=admin).status_code == 404
    assert gw.post(QUERY, params={"query": "up"}, headers=admin).status_code in (403, 405)
