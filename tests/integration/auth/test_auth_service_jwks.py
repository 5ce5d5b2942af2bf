"""GetServiceJwks over real gRPC: the public key Istio's service jwtRule fetches verifies the
service tokens every service mints from the shared key, and nothing else."""

from __future__ import annotations

import pytest
from grpclib.client import Channel

from services.auth.domain import ThrottlePolicy
from services.auth.handlers import AuthHandlers
from services.auth.keys import KeyRing
from services.auth.service import AuthService, TokenSettings
from services.runtime.auth import (
    SERVICE_AUDIENCE,
    SERVICE_ISSUER,
    RuntimeAuth,
    ServiceIdentity,
    TokenError,
    public_key_from_jwk,
    service_signing_key,
    sign,
    verify,
)
from services.runtime.server import App, ServerConfig
from shop.auth.v1 import auth_grpc
from shop.auth.v1 import auth_pb2 as pb
from tests.unit.auth.fakes import Clock, FakeStore, FakeUsers

SEED = "c2hvcG1lc2gtaW50ZWdyYXRpb24tdGVzdC1zZXJ2aWNlLWtleQ"


@pytest.fixture
async def auth_channel():
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
    identity = ServiceIdentity("auth", service_signing_key(SEED))
    app = App(
        ServerConfig(name="auth-jwks-test"),
        [AuthHandlers(service, 0, [identity.jwk()])],
        [],
        auth=RuntimeAuth.from_env("auth-jwks-test"),  # the hook serve() installs
        log_calls=False,
    )
    await app.start()
    channel = Channel("127.0.0.1", app.grpc_port)  # no token: a public method, as istiod calls
    try:
        yield channel
    finally:
        channel.close()
        await app.stop(drain_timeout=1)


async def test_service_jwks_verifies_every_service_token_of_the_shared_key(auth_channel):
    reply = await auth_grpc.AuthServiceStub(auth_channel).GetServiceJwks(pb.GetServiceJwksRequest())
    assert len(reply.keys) == 1
    jwk = reply.keys[0]
    assert (jwk.kty, jwk.crv, jwk.alg, jwk.use) == ("OKP", "Ed25519", "EdDSA", "sig")
    keys = {jwk.kid: public_key_from_jwk({"kty": jwk.kty, "crv": jwk.crv, "x": jwk.x})}
    # Any service holding the same SHOPMESH_SERVICE_KEY mints tokens this key verifies.
    order = ServiceIdentity("order", service_signing_key(SEED))
    claims = verify(order.token(), keys, issuer=SERVICE_ISSUER, audience=SERVICE_AUDIENCE)
    assert claims["sub"] == "order" and claims["roles"] == ["service"]
    # Another key, even claiming the published kid, does not verify.
    other = service_signing_key("b3RoZXIta2V5LW9mLXNvbWVvbmUtZWxzZQ")
    forged = sign({**claims, "sub": "forger"}, other, jwk.kid)
    with pytest.raises(TokenError):
        verify(forged, keys, issuer=SERVICE_ISSUER, audience=SERVICE_AUDIENCE)
