"""The runtime's auth hook: schema access levels and callers against verified principals,
service tokens verified against the keys the auth service publishes per service."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.runtime.auth import (
    SERVICE_AUDIENCE,
    AuthConfig,
    JwksCache,
    Principal,
    RuntimeAuth,
    ServiceIdentity,
    ServiceKeyCache,
    check_access,
    okp_jwk,
    service_issuer,
    sign,
)
from services.runtime.config import ConfigError
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


class ServiceJwks:
    """What GetServiceJwks answers: the published keys and whose each is."""

    def __init__(self, *identities: ServiceIdentity) -> None:
        self.published = list(identities)
        self.fetches = 0

    async def __call__(self) -> dict:
        self.fetches += 1
        return {
            "keys": [i.jwk() for i in self.published],
            "key_services": {i.kid: i.name for i in self.published},
        }


ORDER = ServiceIdentity.from_env("order", {})
NOTIFICATION = ServiceIdentity.from_env("notification", {})


@pytest.fixture
def jwks() -> Jwks:
    return Jwks()


@pytest.fixture
def service_jwks() -> ServiceJwks:
    return ServiceJwks(ORDER, NOTIFICATION)


@pytest.fixture
def hook(jwks: Jwks, service_jwks: ServiceJwks) -> RuntimeAuth:
    cfg = AuthConfig(jwt_issuer=ISS, jwt_audience=AUD)
    return RuntimeAuth(
        cfg,
        ServiceIdentity.from_env("product", {}),
        JwksCache(jwks, max_age_s=300, min_refresh_s=5),
        ServiceKeyCache(service_jwks, max_age_s=300, min_refresh_s=5),
    )


def user_token(roles: list[str] | None = None, kid: str = "u1", key=USER_KEY, **over) -> str:
    now = int(time.time())
    c = {"iss": ISS, "aud": AUD, "sub": "alice", "roles": roles or ["customer"], "iat": now}
    return sign({**c, "exp": now + 60, **over}, key, kid)


def call(access: Access, token: str | None = None, callers: tuple[str, ...] = ()) -> CallInfo:
    md = {"authorization": f"Bearer {token}"} if token is not None else {}
    policy = MethodPolicy("/shop.x.v1.X/Y", access, False, 0, frozenset(callers))
    return CallInfo(policy, md, "127.0.0.1")


def service_token(ident: ServiceIdentity, **over) -> str:
    now = int(time.time())
    claims = {
        "iss": ident.issuer,
        "aud": SERVICE_AUDIENCE,
        "sub": ident.name,
        "iat": now,
        "exp": now + 60,
        **over,
    }
    return sign(claims, ident.key, ident.kid)


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


async def test_a_service_passes_exactly_the_methods_naming_it(hook: RuntimeAuth) -> None:
    token = ORDER.token()
    for access in (Access.INTERNAL, Access.USER, Access.ADMIN):
        p = await hook(call(access, token, callers=("order",)))
        assert (p.kind, p.subject) == ("service", "order")
        # Named nowhere, or another service named: refused, admin methods included.
        for callers in ((), ("notification",)):
            with pytest.raises(PermissionDenied):
                await hook(call(access, token, callers=callers))


async def test_notification_cannot_act_as_order(hook: RuntimeAuth) -> None:
    """Notification's own key signing a token that names order (in sub, in iss or both):
    the key belongs to notification, so the token is invalid, not merely not allowed."""
    for over in (
        {"sub": "order"},
        {"iss": service_issuer("order")},
        {"sub": "order", "iss": service_issuer("order")},
    ):
        with pytest.raises(Unauthenticated):
            await hook(call(Access.INTERNAL, service_token(NOTIFICATION, **over), ("order",)))
    # The same key under its own name is a valid notification token (refused as a caller).
    with pytest.raises(PermissionDenied):
        await hook(call(Access.INTERNAL, service_token(NOTIFICATION), ("order",)))
    # And order's kid on notification's signature does not verify.
    forged = sign(
        {"iss": ORDER.issuer, "aud": SERVICE_AUDIENCE, "sub": "order", "exp": time.time() + 60},
        NOTIFICATION.key,
        ORDER.kid,
    )
    with pytest.raises(Unauthenticated):
        await hook(call(Access.INTERNAL, forged, ("order",)))


async def test_a_key_no_service_holds_is_refused(hook: RuntimeAuth) -> None:
    stranger = ServiceIdentity("order", Ed25519PrivateKey.generate())  # unpublished key
    with pytest.raises(Unauthenticated):
        await hook(call(Access.INTERNAL, stranger.token(), ("order",)))
    stranger.kid = ORDER.kid  # claiming order's published kid: the signature fails
    with pytest.raises(Unauthenticated):
        await hook(call(Access.INTERNAL, stranger.token(), ("order",)))


async def test_service_tokens_expire_and_need_the_service_audience(hook: RuntimeAuth) -> None:
    for over in ({"exp": int(time.time()) - 600}, {"aud": AUD}):
        with pytest.raises(Unauthenticated):
            await hook(call(Access.INTERNAL, service_token(ORDER, **over), ("order",)))


async def test_a_published_key_without_an_owner_verifies_nothing(
    hook: RuntimeAuth, service_jwks: ServiceJwks
) -> None:
    async def unowned() -> dict:
        return {"keys": [ORDER.jwk()]}  # no key_services

    hook.service_keys = ServiceKeyCache(unowned)
    with pytest.raises(Unauthenticated):
        await hook(call(Access.INTERNAL, ORDER.token(), ("order",)))


async def test_a_rotated_service_key_is_accepted_once_published(
    hook: RuntimeAuth, service_jwks: ServiceJwks
) -> None:
    """Rotation: order's new key is refused until the auth service publishes it beside the
    old one, then accepted without restarting the verifier (an unknown kid refetches), and
    the old key keeps working while it is listed."""
    new = ServiceIdentity("order", Ed25519PrivateKey.generate())
    hook.service_keys.min_refresh_s = 0
    with pytest.raises(Unauthenticated):
        await hook(call(Access.INTERNAL, new.token(), ("order",)))
    service_jwks.published.append(new)
    assert (await hook(call(Access.INTERNAL, new.token(), ("order",)))).subject == "order"
    assert (await hook(call(Access.INTERNAL, ORDER.token(), ("order",)))).subject == "order"
    # Dropped: gone at the next refresh (an unknown kid, or max_age_s at the latest).
    service_jwks.published.remove(ORDER)
    await hook.service_keys.refresh(force=True)
    with pytest.raises(Unauthenticated):
        await hook(call(Access.INTERNAL, ORDER.token(), ("order",)))


async def test_unknown_service_kids_cannot_hammer_the_auth_service(
    hook: RuntimeAuth, service_jwks: ServiceJwks
) -> None:
    await hook(call(Access.INTERNAL, ORDER.token(), ("order",)))
    for i in range(20):
        stranger = ServiceIdentity(f"svc{i}", Ed25519PrivateKey.generate())
        with pytest.raises(Unauthenticated):
            await hook(call(Access.INTERNAL, stranger.token(), ("order",)))
    assert service_jwks.fetches == 1


def test_check_access_admits_services_only_where_named() -> None:
    svc = Principal("order", frozenset({"service"}), "service")
    admin = Principal("root", frozenset({"admin"}), "user")
    alice = Principal("alice", frozenset({"customer"}), "user")

    def policy(access: Access, *callers: str) -> MethodPolicy:
        return MethodPolicy("/m", access, False, 0, frozenset(callers))

    assert check_access(policy(Access.PUBLIC), svc) is svc
    assert check_access(policy(Access.ADMIN), admin) is admin
    assert check_access(policy(Access.USER), alice) is alice
    for access in (Access.USER, Access.ADMIN, Access.INTERNAL, Access.UNSPECIFIED):
        with pytest.raises(PermissionDenied):
            check_access(policy(access), svc)
    with pytest.raises(PermissionDenied):
        check_access(policy(Access.UNSPECIFIED, "order"), svc)
    for p in (alice, admin):
        with pytest.raises(PermissionDenied):
            check_access(policy(Access.INTERNAL, "order"), p)


def test_each_service_has_its_own_dev_identity_and_none_outside_dev() -> None:
    order, again = ServiceIdentity.from_env("order", {}), ServiceIdentity.from_env("order", {})
    assert order.kid == again.kid and order.kid != NOTIFICATION.kid
    assert order.kid.startswith("svc-order-")
    claims_iss = order.issuer
    assert claims_iss == "shopmesh-service/order"
    with pytest.raises(ConfigError, match="ORDER_IDENTITY_KEY"):
        ServiceIdentity.from_env("order", {"SHOPMESH_ENV": "prod"})
    from services.runtime.auth import dev_identity_key

    with pytest.raises(ConfigError, match="dev key is refused"):
        ServiceIdentity.from_env(
            "order", {"SHOPMESH_ENV": "prod", "ORDER_IDENTITY_KEY": dev_identity_key("order")}
        )
    with pytest.raises(ConfigError, match="32 bytes"):
        ServiceIdentity.from_env("order", {"ORDER_IDENTITY_KEY": "c2hvcnQ"})
    own = ServiceIdentity.from_env(
        "order",
        {
            "SHOPMESH_ENV": "prod",
            "ORDER_IDENTITY_KEY": "b3JkZXItcHJvZC1zZWVkLW9mLTMyLWJ5dGVzLXh4eHg",
        },
    )
    assert own.kid != order.kid


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


def test_ownership_rules() -> None:  # a service reaching a method at all was named there
    alice = Principal("alice", frozenset({"customer"}), "user")
    admin = Principal("root", frozenset({"admin"}), "user")
    svc = Principal("order", frozenset({"service"}), "service")
    assert alice.may_act_for("alice") and not alice.may_act_for("bob")
    assert admin.may_act_for("bob") and svc.may_act_for("bob")
    assert not Principal().may_act_for("")
