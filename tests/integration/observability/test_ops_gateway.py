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
from stack.model import REPO_ROOT
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


OPS_QUERIES = REPO_ROOT / "frontend" / "src" / "ops" / "queries.json"
# A ratio of server errors has no series while no call failed: legitimately empty.
MAY_BE_EMPTY = {"errors"}


def test_every_ops_page_query_answers_with_data_through_the_gateway(
    stack, gw: httpx.Client, customer: str
):
    """The ops page's own queries (the JSON file it imports), run through the admin-only
    proxy against the stack's Prometheus: each is valid PromQL and names series that exist,
    so a renamed metric or a typo shows up here rather than as an empty chart."""
    stack.require("order", "notification", "product")
    queries = json.loads(OPS_QUERIES.read_text())
    assert {"rate", "p99", "lag", "dlq", "replicaLag", "outbox"} <= set(queries)
    admin = {"authorization": f"Bearer {admin_token(stack, customer)}"}

    def empty() -> list[str]:
        out = []
        for key, query in queries.items():
            r = gw.get(QUERY, params={"query": query}, headers=admin)
            assert r.status_code == 200, f"{key}: {r.text}"
            body = r.json()
            assert body["status"] == "success", f"{key}: {body}"
            if not body["data"]["result"] and key not in MAY_BE_EMPTY:
                out.append(key)
        return out

    # Prometheus scrapes every 2 s locally; rates need two samples inside their window.
    deadline = time.monotonic() + 60
    while (missing := empty()) and time.monotonic() < deadline:
        time.sleep(2)
    assert not missing, f"ops page queries with no data: {missing}"
