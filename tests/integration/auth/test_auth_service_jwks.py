"""One identity per service, over real gRPC: the auth service publishes each service's public
keys (GetServiceJwks, from AUTH_SERVICE_PUBLIC_KEYS), and a real verifier (the user service
in-process, CheckCredentials: callers [auth]) accepts a service token only from the key its
service holds, under its own name; rotation publishes a new key beside the old one and the
verifier accepts it without a restart."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from services.auth.config import AuthServiceConfig
from services.auth.domain import ThrottlePolicy
from services.auth.handlers import AuthHandlers
from services.auth.keys import KeyRing
from services.auth.service import AuthService, TokenSettings
from services.auth.service_keys import ServiceKeys
from services.runtime.auth import (
    SERVICE_AUDIENCE,
    AuthConfig,
    AuthKeysClient,
    JwksCache,
    RuntimeAuth,
    ServiceIdentity,
    ServiceKeyCache,
    TokenError,
    b64url,
    public_key_from_jwk,
    public_x,
    service_issuer,
    service_signing_key,
    sign,
    verify,
)
from services.runtime.db import Database
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import App, ServerConfig
from services.user.config import UserConfig
from services.user.handlers import UserHandlers
from services.user.main import MIGRATIONS
from services.user.passwords import Argon2Hasher
from services.user.repository import SqlUserUnitOfWork
from shop.auth.v1 import auth_grpc
from shop.auth.v1 import auth_pb2 as pb
from shop.user.v1 import user_grpc, user_pb2
from tests.unit.auth.fakes import Clock, FakeStore, FakeUsers


def _identity(name: str) -> ServiceIdentity:
    return ServiceIdentity(name, service_signing_key(b64url(os.urandom(32))))


def _entry(ident: ServiceIdentity) -> str:
    return f"{ident.name}:{public_x(ident.key)}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Publisher:
    """The auth service's public-key endpoint, started from AUTH_SERVICE_PUBLIC_KEYS as the
    real one is, on one fixed port; `restart` is a rollout with another key list."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.app: App | None = None

    async def start(self, *published: ServiceIdentity) -> None:
        cfg = AuthServiceConfig.from_env(
            {"AUTH_SERVICE_PUBLIC_KEYS": ",".join(_entry(i) for i in published)}
        )
        clock = Clock()
        ring = KeyRing(b"k" * 32, 900, 86400, 300, clock)
        ring.load([ring.next_key_due()])
        service = AuthService(
            FakeUsers(),
            FakeStore(),
            ring,
            TokenSettings("https://auth.test", "shop", access_ttl_s=900, refresh_ttl_s=3600),
            ThrottlePolicy(max_attempts=10, free_failures=3, window_s=60, base_lock_s=2),
            ThrottlePolicy(max_attempts=30, free_failures=20, window_s=60),
            clock,
        )
        handlers = AuthHandlers(service, 0, ServiceKeys(cfg.service_keys()))
        self.app = App(ServerConfig(name="auth", grpc_port=self.port), [handlers], [])
        await self.app.start()

    async def restart(self, *published: ServiceIdentity) -> None:
        await self.stop()
        await self.start(*published)

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop(drain_timeout=0)
            self.app = None


@pytest.fixture
async def publisher() -> AsyncIterator[Publisher]:
    pub = Publisher()
    try:
        yield pub
    finally:
        await pub.stop()


def _verifier_hook(port: int, max_age_s: float) -> RuntimeAuth:
    """The hook serve() installs, fetching keys from `port` (built by hand so this test
    does not make "user" the identity of the whole test process)."""
    cfg = AuthConfig(auth_addr=f"127.0.0.1:{port}", jwks_max_age_s=max_age_s)
    client = AuthKeysClient("127.0.0.1", port)
    return RuntimeAuth(
        cfg,
        ServiceIdentity.from_env("user", {}),
        JwksCache(client.user_jwks, max_age_s, 0),
        ServiceKeyCache(client.service_jwks, max_age_s, 0),
        client,
    )


@pytest.fixture
async def verifier(stack, publisher) -> AsyncIterator[Callable]:
    """The user service in-process; yields call(token) -> CheckCredentials' outcome."""
    stack.require("postgres-primary", "postgres-replica")
    config = UserConfig.from_env({})
    db = Database(config.db, Metrics("user-ident-test"), service="user-ident-test")
    await db.open()
    await migrate(db.primary, MIGRATIONS)
    hook = _verifier_hook(publisher.port, max_age_s=2.0)
    app = App(
        ServerConfig(name="user-ident-test"),
        [UserHandlers(lambda: SqlUserUnitOfWork(db.unit_of_work()), Argon2Hasher(1, 1024))],
        [db, hook],
        auth=hook,
        log_calls=False,
    )
    await app.start()
    channel = Channel("127.0.0.1", app.grpc_port)
    stub = user_grpc.UserServiceStub(channel)

    async def call(token: str) -> str:
        req = user_pb2.CheckCredentialsRequest(email="nobody@example.com", password="x")
        try:
            await stub.CheckCredentials(req, metadata={"authorization": f"Bearer {token}"})
        except GRPCError as exc:
            return exc.status.name
        return "OK"

    try:
        yield call
    finally:
        channel.close()
        await app.stop(drain_timeout=1)


async def test_service_jwks_serves_each_service_its_own_keys(publisher) -> None:
    auth, order, order_next = _identity("auth"), _identity("order"), _identity("order")
    await publisher.start(auth, order, order_next)
    channel = Channel("127.0.0.1", publisher.port)  # no token: public, as istiod calls it
    try:
        stub = auth_grpc.AuthServiceStub(channel)
        everyone = await stub.GetServiceJwks(pb.GetServiceJwksRequest())
        assert dict(everyone.key_services) == {
            auth.kid: "auth",
            order.kid: "order",
            order_next.kid: "order",
        }
        only = await stub.GetServiceJwks(pb.GetServiceJwksRequest(service="order"))
        assert [k.kid for k in only.keys] == [order.kid, order_next.kid]
        assert all(
            (k.kty, k.crv, k.alg, k.use) == ("OKP", "Ed25519", "EdDSA", "sig") for k in only.keys
        )
        assert not (await stub.GetServiceJwks(pb.GetServiceJwksRequest(service="nobody"))).keys
        with pytest.raises(GRPCError) as bad:
            await stub.GetServiceJwks(pb.GetServiceJwksRequest(service="Order/../x"))
        assert bad.value.status is Status.INVALID_ARGUMENT
        # The published key verifies order's tokens, under order's issuer only.
        keys = {
            k.kid: public_key_from_jwk({"kty": k.kty, "crv": k.crv, "x": k.x}) for k in only.keys
        }
        claims = verify(
            order.token(), keys, issuer=service_issuer("order"), audience=SERVICE_AUDIENCE
        )
        assert claims["sub"] == "order"
        forged = sign({**claims, "sub": "forger"}, Ed25519PrivateKey.generate(), order.kid)
        with pytest.raises(TokenError):
            verify(forged, keys, issuer=service_issuer("order"), audience=SERVICE_AUDIENCE)
    finally:
        channel.close()


async def test_a_service_token_passes_only_as_its_own_service(publisher, verifier) -> None:
    auth, notification = _identity("auth"), _identity("notification")
    await publisher.start(auth, notification)
    assert await verifier(auth.token()) == "OK"  # CheckCredentials names auth
    # Notification's valid token: authenticated, but not a caller of CheckCredentials.
    assert await verifier(notification.token()) == "PERMISSION_DENIED"
    # Notification's key claiming to be auth: not a valid token at all.
    impostor = ServiceIdentity("auth", notification.key)  # auth's name, notification's key
    assert await verifier(impostor.token()) == "UNAUTHENTICATED"
    forged = sign(
        {"iss": service_issuer("auth"), "aud": SERVICE_AUDIENCE, "sub": "auth", "exp": 2**40},
        notification.key,
        notification.kid,
    )
    assert await verifier(forged) == "UNAUTHENTICATED"
    # A key no service holds.
    assert await verifier(_identity("auth").token()) == "UNAUTHENTICATED"


async def test_rotating_a_service_key_without_restarting_the_verifier(publisher, verifier) -> None:
    old, new = _identity("auth"), ServiceIdentity("auth", Ed25519PrivateKey.generate())
    await publisher.start(old)
    assert await verifier(old.token()) == "OK"
    assert await verifier(new.token()) == "UNAUTHENTICATED"  # not published yet
    # Step 1: the new key is published beside the old one (the auth service rolled).
    await publisher.restart(old, new)
    assert await verifier(new.token()) == "OK"  # unknown kid -> refetched, same verifier
    assert await verifier(old.token()) == "OK"  # the old key still listed
    # Step 3: the old key is dropped; the verifier forgets it at its next refresh.
    await publisher.restart(new)
    await asyncio.sleep(2.2)  # past the verifier's jwks_max_age_s (2 s here)
    assert await verifier(old.token()) == "UNAUTHENTICATED"
    assert await verifier(new.token()) == "OK"
