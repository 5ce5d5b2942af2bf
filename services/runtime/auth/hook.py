"""Who is calling (`Principal`) and may they call this method: the auth hook serve()
installs (`RuntimeAuth`), the schema policy check (`check_access`) and the ownership helpers
handlers use."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from cachetools import TLRUCache

from services.runtime import context
from services.runtime.auth.identity import (
    SERVICE_AUDIENCE,
    SERVICE_KID_PREFIX,
    SERVICE_ROLE,
    ServiceIdentity,
    register_process_identity,
    service_issuer,
)
from services.runtime.auth.jws import TokenError, unverified_header, verify
from services.runtime.auth.keys import AuthKeysClient, JwksCache, ServiceKeyCache
from services.runtime.config import load, setting
from services.runtime.errors import PermissionDenied, Unauthenticated
from services.runtime.policy import Access, CallInfo, MethodPolicy
from shop.topology import SERVICES

log = logging.getLogger("services.runtime.auth")

DEFAULT_ISSUER = "https://auth.shopmesh.local"
DEFAULT_AUDIENCE = "shopmesh"
ADMIN_ROLE = "admin"
PAYLOAD_HEADER = "x-shop-jwt-payload"  # set by Envoy on the edge, informational only


@dataclass(frozen=True)
class Principal:
    """Who is calling. `kind` is "user", "service" or "anonymous"."""

    subject: str = ""
    roles: frozenset[str] = frozenset()
    kind: str = "anonymous"
    token_id: str = ""

    @property
    def is_admin(self) -> bool:
        return self.kind == "user" and ADMIN_ROLE in self.roles

    @property
    def is_service(self) -> bool:
        return self.kind == "service"

    @property
    def user_id(self) -> str:
        return self.subject if self.kind == "user" else ""

    def may_act_for(self, user_id: str) -> bool:
        """Ownership: the user themselves, an admin, or a service acting for the platform
        (one that reached the method at all: check_access admits only its named callers)."""
        return self.is_service or self.is_admin or (self.kind == "user" and self.subject == user_id)


ANONYMOUS = Principal()


def current_principal() -> Principal:
    """The principal of the call being served (anonymous outside a call)."""
    ctx = context.current()
    p = ctx.principal if ctx is not None else None
    return p if isinstance(p, Principal) else ANONYMOUS


def require_self_or_admin(user_id: str, *, hide: bool = False) -> Principal:
    """Ownership check for handlers. `hide=True` answers NOT_FOUND so ids of other users'
    things (orders) do not leak; otherwise PERMISSION_DENIED."""
    from services.runtime.errors import NotFound

    p = current_principal()
    if not p.may_act_for(user_id):
        if hide:
            raise NotFound("not found")
        raise PermissionDenied("not yours")
    return p


def require_admin() -> Principal:
    """An admin user, or a service the method's policy names as a caller (check_access has
    admitted no other service)."""
    p = current_principal()
    if not (p.is_admin or p.is_service):
        raise PermissionDenied("admin role required")
    return p


@dataclass(frozen=True)
class AuthConfig:
    """Env: SHOPMESH_<FIELD>; one set for all services (they must agree). The mesh generator
    reads the same issuer and audience (mesh/jwt.py), so Envoy and Istio check what the
    auth service issues."""

    jwt_issuer: str = setting(DEFAULT_ISSUER, help="iss of user access tokens")
    jwt_audience: str = setting(DEFAULT_AUDIENCE, help="aud of user access tokens")
    auth_addr: str = setting(SERVICES["auth"].local_addr, help="auth service gRPC address (JWKS)")
    jwks_max_age_s: float = setting(
        300.0, help="JWKS cache lifetime (user and service keys; a dropped key lives this long)"
    )
    jwks_min_refresh_s: float = setting(5.0, help="minimum gap between JWKS fetches")
    verified_tokens: int = setting(
        10_000, help="tokens whose verification is remembered (0 = verify every call)"
    )

    @classmethod
    def from_env(cls, environ: Any = None) -> AuthConfig:
        return load(cls, "SHOPMESH", environ)


def bearer(metadata: Mapping[str, str]) -> str | None:
    raw = metadata.get("authorization")
    if not raw:
        return None
    scheme, _, token = str(raw).partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("malformed authorization header")
    return token.strip()


def _no_keys() -> ServiceKeyCache:
    async def fetch() -> dict[str, Any]:
        return {}

    return ServiceKeyCache(fetch)


@dataclass
class RuntimeAuth:
    """The auth hook of `serve()`: verifies the bearer token and enforces the method's
    policy. Also a Resource (open/close) so the key-fetching channel closes with the
    service."""

    config: AuthConfig
    identity: ServiceIdentity
    jwks: JwksCache
    service_keys: ServiceKeyCache = dataclasses.field(default_factory=_no_keys)
    _client: Any = None
    # A caller sends the same token on every call until it renews it (a service every few
    # minutes, a shopper's browser until expiry), so its verification is remembered: the
    # Ed25519 check, the JSON and the claim checks cost ~70-130 us per call otherwise. An
    # entry lives until the token's exp and no longer than the JWKS cache's max age, and is
    # used only while the key that verified it is still the one the key cache holds for
    # its kid: a key dropped at a refresh stops admitting its tokens at once, as without
    # this cache.
    _verified: TLRUCache | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.config.verified_tokens > 0:
            self._verified = TLRUCache(
                maxsize=self.config.verified_tokens, ttu=_until, timer=time.time
            )

    @classmethod
    def from_env(cls, service: str, environ: Any = None) -> RuntimeAuth:
        """The hook of service `service`, whose identity becomes this process's."""
        cfg = AuthConfig.from_env(environ)
        host, _, port = cfg.auth_addr.rpartition(":")
        client = AuthKeysClient(host or "127.0.0.1", int(port))
        identity = register_process_identity(ServiceIdentity.from_env(service, environ))
        return cls(
            cfg,
            identity,
            JwksCache(client.user_jwks, cfg.jwks_max_age_s, cfg.jwks_min_refresh_s),
            ServiceKeyCache(client.service_jwks, cfg.jwks_max_age_s, cfg.jwks_min_refresh_s),
            client,
        )

    async def open(self) -> None:
        return None  # keys are fetched on the first token, not at start (auth may be down)

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def principal_of(self, token: str) -> Principal:
        """The verified principal of `token` (remembered until its expiry, see _verified)."""
        if self._verified is None:
            return (await self._verify(token))[0]
        hit: _Verified | None = self._verified.get(token)
        if hit is not None and hit.keys.keys.get(hit.kid) is hit.key:
            return hit.principal
        found = await self._verify(token)
        cap = time.time() + self.config.jwks_max_age_s
        self._verified[token] = found._replace(until=min(found.until, cap))
        return found.principal

    async def _verify(self, token: str) -> _Verified:
        """A token checked against the published keys: who, until when, with which key."""
        header = unverified_header(token)
        kid = header["kid"]
        if kid.startswith(SERVICE_KID_PREFIX):
            return await self._service_principal(token, kid)
        key = await self.jwks.get(kid)
        if key is None:
            raise TokenError(f"unknown kid {kid!r}")
        claims = verify(
            token, {kid: key}, issuer=self.config.jwt_issuer, audience=self.config.jwt_audience
        )
        roles = claims.get("roles") or []
        if not isinstance(roles, list):
            raise TokenError("roles not a list")
        # "service" is never a user role, whatever a token says.
        user_roles = frozenset(str(r) for r in roles if r != SERVICE_ROLE)
        principal = Principal(claims["sub"], user_roles, "user", str(claims.get("jti", "")))
        return _Verified(principal, float(claims["exp"]), self.jwks, kid, key)

    async def _service_principal(self, token: str, kid: str) -> _Verified:
        """A service token: signed by a published key, and its iss/sub name the service that
        key was published for (the kid only picks the key; it never names the caller)."""
        found = await self.service_keys.owned(kid)
        if found is None:
            raise TokenError(f"unknown service kid {kid!r}")
        owner, key = found
        claims = verify(token, {kid: key}, issuer=service_issuer(owner), audience=SERVICE_AUDIENCE)
        if claims["sub"] != owner:
            raise TokenError(f"service token of {owner!r} claims sub {claims['sub']!r}")
        jti = str(claims.get("jti", ""))
        principal = Principal(owner, frozenset([SERVICE_ROLE]), "service", jti)
        return _Verified(principal, float(claims["exp"]), self.service_keys, kid, key)

    async def __call__(self, call: CallInfo) -> Principal:
        access = call.policy.access
        if access is Access.PUBLIC:
            return ANONYMOUS
        token = bearer(call.metadata)
        if token is None:
            raise Unauthenticated("authentication required")
        try:
            p = await self.principal_of(token)
        except TokenError as exc:
            log.info(
                "token refused",
                extra={"fields": {"method": call.policy.method, "reason": str(exc)}},
            )
            raise Unauthenticated("invalid token") from None
        return check_access(call.policy, p)


class _Verified(NamedTuple):
    """A verified token: its principal, when to stop trusting the check, and the key that
    passed it (in which key cache, under which kid)."""

    principal: Principal
    until: float
    keys: JwksCache
    kid: str
    key: Any


def _until(_token: str, entry: _Verified, _now: float) -> float:
    return entry.until


def check_access(policy: MethodPolicy, p: Principal) -> Principal:
    """The schema's policy against a verified principal. A service passes only where the
    method names it in `callers`, whatever the access level: service tokens open neither
    admin methods nor anything else by themselves."""
    access = policy.access
    if access is Access.PUBLIC:
        return p
    if p.is_service:
        if access is not Access.UNSPECIFIED and p.subject in policy.callers:
            return p
        raise PermissionDenied(
            f"{policy.method or 'method'}: service {p.subject!r} is not among its callers"
        )
    if access is Access.USER and p.kind == "user":
        return p
    if access is Access.ADMIN and p.is_admin:
        return p
    # INTERNAL admits services only; UNSPECIFIED (no policy) is refused for everyone.
    raise PermissionDenied(f"{policy.method or 'method'}: not allowed for this caller")
