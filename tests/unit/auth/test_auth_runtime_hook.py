"""The runtime's auth hook: schema access levels against verified principals."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.runtime.auth import (
    DEV_SERVICE_KEY,
    AuthConfig,
    JwksCache,
    Principal,
    RuntimeAuth,
    ServiceIdentity,
    okp_jwk,
    service_signing_key,
    sign,
)
from services.runtime.errors import PermissionDenied, Unauthenticated
from services.runtime.policy import Access, CallInfo, MethodPolicy

ISS, AUD = "https://auth.test", "shop"
USER_KEY = Ed25519PrivateKey.generate()


class Jwks:
    def __init__(self) -> None:
        self.keys = {"u1": USER_KEY}
        self.fetches = 0

    async def __call__(self) -> dict:
        self.fetches += 1
        return {"keys": [okp_jwk(k.public_key(), kid) for kid, k in self.keys.items()]}


@pytest.fixture
def jwks() -> Jwks:
    return Jwks()


@pytest.fixture
def hook(jwks: Jwks) -> RuntimeAuth:
    cfg = AuthConfig(jwt_issuer=ISS, jwt_audience=AUD, service_key=DEV_SERVICE_KEY)
    ident = ServiceIdentity("order", service_signing_key(DEV_SERVICE_KEY))
    return RuntimeAuth(cfg, ident, JwksCache(jwks, max_age_s=300, min_refresh_s=5))


def user_token(roles: list[str] | None = None, kid: str = "u1", key=USER_KEY, **over) -> str:
    now = int(time.time())
    c = {"iss": ISS, "aud": AUD, "sub": "alice", "roles": roles or ["customer"], "iat": now}
    return sign({**c, "exp": now + 60, **over}, key, kid)


def call(access: Access, token: str | None = None) -> CallInfo:
    md = {"authorization": f"Bearer {token}"} if token is not None else {}
    return CallInfo(MethodPolicy("/shop.x.v1.X/Y", access, False, 0), md, "127.0.0.1")


async def test_public_methods_ignore_any_token(hook: RuntimeAuth) -> None:
    assert (await hook(call(Access.PUBLIC, "garbage"))).kind == "anonymous"
    assert (await hook(call(Access.PUBLIC))).kind == "anonymous"


@pytest.mark.parametrize("access", [Access.USER, Access.ADMIN, Access.INTERNAL])
async def test_protected_methods_need_a_token(hook: RuntimeAuth, access: Access) -> None:
    with pytest.raises(Unauthenticated):
        await hook(call(access))
    with pytest.raises(Unauthenticated):
        await hook(call(access, "not.a.jwt"))


async def test_user_token_passes_user_methods_with_its_subject(hook: RuntimeAuth) -> None:
    p = await hook(call(Access.USER, user_token()))
    assert (p.kind, p.user_id, p.roles) == ("user", "alice", frozenset({"customer"}))


async def test_admin_methods_need_the_admin_role(hook: RuntimeAuth) -> None:
    with pytest.raises(PermissionDenied):
        await hook(call(Access.ADMIN, user_token()))
    assert (await hook(call(Access.ADMIN, user_token(["customer", "admin"])))).is_admin


async def test_internal_methods_refuse_users_even_admins(hook: RuntimeAuth) -> None:
    with pytest.raises(PermissionDenied):
        await hook(call(Access.INTERNAL, user_token(["admin"])))


async def test_a_user_token_claiming_the_service_role_is_still_a_user(hook: RuntimeAuth) -> None:
    with pytest.raises(PermissionDenied):
        await hook(call(Access.INTERNAL, user_token(["service"])))


async def test_service_token_passes_internal_user_and_admin_methods(hook: RuntimeAuth) -> None:
    token = hook.identity.token()
    for access in (Access.INTERNAL, Access.USER, Access.ADMIN):
        assert (await hook(call(access, token))).is_service


async def test_service_token_from_another_key_is_refused(hook: RuntimeAuth) -> None:
    other = ServiceIdentity("order", Ed25519PrivateKey.generate())
    other.kid = hook.identity.kid  # same kid, wrong key
    with pytest.raises(Unauthenticated):
        await hook(call(Access.INTERNAL, other.token()))


async def test_expired_wrong_audience_and_foreign_signature_are_refused(hook: RuntimeAuth) -> None:
    for token in (
        user_token(exp=int(time.time()) - 600),
        user_token(aud="other"),
        user_token(key=Ed25519PrivateKey.generate()),
    ):
        with pytest.raises(Unauthenticated):
            await hook(call(Access.USER, token))


async def test_unknown_kid_refetches_the_jwks_once(hook: RuntimeAuth, jwks: Jwks) -> None:
    await hook(call(Access.USER, user_token()))
    assert jwks.fetches == 1
    rotated = Ed25519PrivateKey.generate()
    jwks.keys["u2"] = rotated
    hook.jwks.min_refresh_s = 0
    p = await hook(call(Access.USER, user_token(kid="u2", key=rotated)))
    assert p.user_id == "alice" and jwks.fetches == 2


async def test_random_kids_cannot_hammer_the_auth_service(hook: RuntimeAuth, jwks: Jwks) -> None:
    await hook(call(Access.USER, user_token()))
    for i in range(20):
        with pytest.raises(Unauthenticated):
            await hook(call(Access.USER, user_token(kid=f"junk{i}")))
    assert jwks.fetches == 1  # within min_refresh_s: no refetch


def test_ownership_rules() -> None:
    alice = Principal("alice", frozenset({"customer"}), "user")
    admin = Principal("root", frozenset({"admin"}), "user")
    svc = Principal("order", frozenset({"service"}), "service")
    assert alice.may_act_for("alice") and not alice.may_act_for("bob")
    assert admin.may_act_for("bob") and svc.may_act_for("bob")
    assert not Principal().may_act_for("")
