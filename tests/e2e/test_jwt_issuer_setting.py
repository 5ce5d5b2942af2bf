"""One source for the user-token issuer: with SHOPMESH_JWT_ISSUER changed, the auth service
issues with it, the services verify it, and Envoy (the stack's own rendering for that
environment, stack/gateway.py) checks it, so a login's token is accepted at the edge.

A private auth service, user service and Envoy run on spare ports beside the shared stack
(same databases); auth checks credentials through the private Envoy's internal listener,
as its own identity. The shared stack, on the default issuer, refuses the same token.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from mesh import envoy
from mesh.api import load
from mesh.generate import DESCRIPTOR
from mesh.testing import ROOT, PrivateEnvoy, free_port
from services.runtime.auth import DEFAULT_ISSUER
from stack import gateway

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

ISSUER = "https://login.issuer-e2e.example"


def _claims(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


async def _is_serving(port: int) -> bool:
    channel = Channel("127.0.0.1", port)
    try:
        reply = await HealthStub(channel).Check(HealthCheckRequest(service=""), timeout=1)
        return reply.status == HealthCheckResponse.SERVING
    except Exception:  # not listening yet
        return False
    finally:
        channel.close()


def _serving(port: int, proc: subprocess.Popen, log: Path, within: float = 90) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited: {log.read_text()[-3000:]}")
        if asyncio.run(_is_serving(port)):
            return
        time.sleep(0.3)
    raise TimeoutError(f"not serving after {within} s: {log.read_text()[-3000:]}")


@pytest.fixture
def private(stack, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """(private Envoy edge URL, shared gateway URL) with SHOPMESH_JWT_ISSUER = ISSUER."""
    stack.require("user", "auth", "nginx")  # the databases, Kafka, and the default-issuer stack
    ports = {k: free_port() for k in ("auth", "user", "edge", "internal", "admin")}
    env = {
        "SHOPMESH_JWT_ISSUER": ISSUER,
        "SHOPMESH_AUTH_ADDR": f"127.0.0.1:{ports['auth']}",
        "SHOPMESH_ENVOY_PORT": str(ports["edge"]),
        "SHOPMESH_ENVOY_INTERNAL_PORT": str(ports["internal"]),
        "SHOPMESH_ENVOY_ADMIN_PORT": str(ports["admin"]),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # What `python -m stack up` would run for this environment: not the committed file.
    assert gateway._envoy_overridden()
    opt = gateway._envoy_options()
    assert opt.jwt_issuer == ISSUER
    opt = dataclasses.replace(
        opt,
        descriptor_path=str(ROOT / "mesh" / "out" / "envoy" / "descriptor.binpb"),
        endpoints={"auth": [("127.0.0.1", ports["auth"])], "user": [("127.0.0.1", ports["user"])]},
        access_log=False,
    )
    procs = []
    children = {
        "user": {
            "USER_GRPC_PORT": str(ports["user"]),
            "USER_METRICS_PORT": "0",
            "USER_WORKERS": "1",
        },
        "auth": {
            "AUTH_GRPC_PORT": str(ports["auth"]),
            "AUTH_METRICS_PORT": "0",
            "AUTH_WORKERS": "1",
            "AUTH_USER_ADDR": f"127.0.0.1:{ports['internal']}",  # through the private Envoy
        },
    }
    with PrivateEnvoy(envoy.build(load(DESCRIPTOR), opt), tmp_path / "envoy", ports["admin"]):
        try:
            for name, extra in children.items():
                log = tmp_path / f"{name}.log"
                with log.open("wb") as out:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", f"services.{name}.main"],
                        cwd=ROOT,
                        env={**os.environ, **extra},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                procs.append(proc)
                _serving(ports[name], proc, log)
            yield f"http://127.0.0.1:{ports['edge']}", stack.nginx_url
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_a_login_under_another_issuer_is_accepted_at_the_edge(private) -> None:
    edge, shared = private
    email = f"issuer-{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=edge, timeout=20) as gw:
        r = gw.post(
            "/api/v1/users",
            json={"email": email, "password": "correct horse 2", "display_name": "I"},
        )
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30  # Envoy fetches the JWKS in the background
        while True:
            r = gw.post("/api/v1/auth/login", json={"email": email, "password": "correct horse 2"})
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert r.status_code == 200, r.text
        tokens = r.json()["tokens"]
        assert _claims(tokens["access_token"])["iss"] == ISSUER
        headers = {"authorization": f"Bearer {tokens['access_token']}"}
        while True:
            r = gw.get(f"/api/v1/users/{tokens['user_id']}", headers=headers)
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        # Envoy's jwt_authn and the user service's own check both took the new issuer.
        assert r.status_code == 200, r.text
        assert r.json()["user"]["email"] == email
    # The shared stack runs the default issuer: the same valid signature is refused there.
    assert DEFAULT_ISSUER != ISSUER
    with httpx.Client(base_url=shared, timeout=20) as gw:
        r = gw.get(f"/api/v1/users/{tokens['user_id']}", headers=headers)
        assert r.status_code == 401, r.text
