"""Identity and access in every service: who is calling (`Principal`) and may they call this
method (the schema's `shop.mesh.v1.policy` access level). `serve()` installs `RuntimeAuth` as
the auth hook of every service, so a call that bypasses Envoy is checked the same way.

Tokens (one algorithm everywhere, pinned: EdDSA / Ed25519, a JWS compact JWT with a `kid`):

- user access tokens: issued by the auth service (iss = SHOPMESH_JWT_ISSUER, aud =
  SHOPMESH_JWT_AUDIENCE, sub = user id, roles, exp, iat, jti). Verified here against the JWKS
  fetched from the auth service (GetJwks), cached, refetched on an unknown kid (at most once
  per `jwks_min_refresh_s`, so random kids cannot hammer the auth service).
- service tokens: minted by each service with the shared service key (SHOPMESH_SERVICE_KEY,
  an Ed25519 seed; dev default only in SHOPMESH_ENV=dev): iss = SERVICE_ISSUER, sub = the
  service name, roles = ["service"]. Only services hold that key and Envoy never trusts it,
  so such a token is useless at the edge; it is what lets order call product's internal
  ReserveStock directly or through the mesh's internal listener.

Access levels: public -> anyone (a token is not even read: a stale token never breaks the
catalog or RefreshToken; Envoy has no rule for them either); user -> a valid user or service
token; admin -> a valid token with the admin role, or a service token; internal -> a service
token only. Missing or invalid token -> UNAUTHENTICATED, valid but not allowed ->
PERMISSION_DENIED.

The `x-shop-jwt-payload` header Envoy sets is never trusted here (a direct call could forge
it); the principal always comes from a signature this module verified. The JWS code is ours
(`cryptography` Ed25519, ~40 lines) because joserfc 1.8 flags "EdDSA" as deprecated by
RFC 9864 on every call while Envoy's jwt_authn accepts only that name; unit tests check that
joserfc and this module read each other's tokens.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.runtime import context
from services.runtime.config import environment, load, secret, setting
from services.runtime.errors import PermissionDenied, Unauthenticated
from services.runtime.policy import Access, CallInfo

log = logging.getLogger(__name__)

ALG = "EdDSA"
DEFAULT_ISSUER = "https://auth.shopmesh.local"
DEFAULT_AUDIENCE = "shopmesh"
SERVICE_ISSUER = "shopmesh-service"
SERVICE_AUDIENCE = "shopmesh-internal"
SERVICE_ROLE = "service"
ADMIN_ROLE = "admin"
PAYLOAD_HEADER = "x-shop-jwt-payload"  # set by Envoy on the edge, informational only
DEV_SERVICE_KEY = "c2hvcG1lc2gtZGV2LXNlcnZpY2Uta2V5LW5vdC1zZWNyZXQ"  # 32-byte seed, dev only
MAX_TOKEN_BYTES = 4096
CLOCK_SKEW_S = 30


# ---------------------------------------------------------------- JWS compact, EdDSA only


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not text or any(c in text for c in "=+/ \n"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def okp_jwk(public: Ed25519PublicKey, kid: str) -> dict[str, str]:
    """The JWKS entry of an Ed25519 public key (RFC 8037)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": kid, "use": "sig", "alg": ALG}


def public_key_from_jwk(jwk: Mapping[str, Any]) -> Ed25519PublicKey | None:
    """None for keys we do not use (another kty/crv/alg): they are skipped, never trusted."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or jwk.get("alg", ALG) != ALG:
        return None
    try:
        return Ed25519PublicKey.from_public_bytes(b64url_decode(str(jwk.get("x", ""))))
    except ValueError:
        return None


def sign(claims: Mapping[str, Any], key: Ed25519PrivateKey, kid: str) -> str:
    header = {"alg": ALG, "typ": "JWT", "kid": kid}
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    return f"{signing_input}.{b64url(key.sign(signing_input.encode('ascii')))}"


class TokenError(Exception):
    """Why a token was refused (goes to logs; the client sees one generic message)."""


def unverified_header(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(token) > MAX_TOKEN_BYTES or len(parts) != 3:
        raise TokenError("malformed token")
    try:
        header = json.loads(b64url_decode(parts[0]))
    except (ValueError, binascii.Error) as exc:
        raise TokenError("malformed header") from exc
    if not isinstance(header, dict):
        raise TokenError("malformed header")
    # Pinned: "none", HS256 (a public key used as an HMAC secret) and the rest never verify.
    if header.get("alg") != ALG:
        raise TokenError(f"algorithm {header.get('alg')!r} not accepted")
    if not isinstance(header.get("kid"), str) or header.get("crit"):
        raise TokenError("kid missing or crit header present")
    return header


def verify(
    token: str,
    keys: Mapping[str, Ed25519PublicKey],
    *,
    issuer: str,
    audience: str,
    now: float | None = None,
    leeway: int = CLOCK_SKEW_S,
) -> dict[str, Any]:
    """Claims of a token signed by one of `keys` (by kid) for `issuer` and `audience`."""
    header = unverified_header(token)
    key = keys.get(header["kid"])
    if key is None:
        raise TokenError(f"unknown kid {header['kid']!r}")
    head, body, sig = token.split(".")
    try:
        key.verify(b64url_decode(sig), f"{head}.{body}".encode("ascii"))
    except (InvalidSignature, ValueError, binascii.Error) as exc:
        raise TokenError("bad signature") from exc
    try:
        claims = json.loads(b64url_decode(body))
    except (ValueError, binascii.Error) as exc:
        raise TokenError("malformed payload") from exc
    if not isinstance(claims, dict):
        raise TokenError("malformed payload")
    now = time.time() if now is None else now
    if claims.get("iss") != issuer:
        raise TokenError("wrong issuer")
    aud = claims.get("aud")
    if audience not in (aud if isinstance(aud, list) else [aud]):
        raise TokenError("wrong audience")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or exp + leeway < now:
        raise TokenError("expired")
    if isinstance(iat, int | float) and iat - leeway > now:
        raise TokenError("issued in the future")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf - leeway > now:
        raise TokenError("not yet valid")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise TokenError("sub missing")
    return claims


# ---------------------------------------------------------------- principal


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
        """Ownership: the user themselves, an admin, or a service acting for the platform."""
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
    p = current_principal()
    if not (p.is_admin or p.is_service):
        raise PermissionDenied("admin role required")
    return p


# ---------------------------------------------------------------- service identity


def service_signing_key(seed_b64: str) -> Ed25519PrivateKey:
    seed = hashlib.sha256(b"shopmesh-service-key:" + b64url_decode(seed_b64)).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


class ServiceIdentity:
    """Mints this service's token (cached, renewed a minute before expiry)."""

    def __init__(self, name: str, key: Ed25519PrivateKey, ttl_s: int = 600) -> None:
        self.name = name
        self.key = key
        self.kid = (
            "svc-" + hashlib.sha256(okp_jwk(key.public_key(), "")["x"].encode()).hexdigest()[:12]
        )
        self.ttl_s = ttl_s
        self._token = ""
        self._exp = 0.0

    def token(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if now > self._exp - 60:
            iat = int(now)
            claims = {
                "iss": SERVICE_ISSUER,
                "aud": SERVICE_AUDIENCE,
                "sub": self.name,
                "roles": [SERVICE_ROLE],
                "iat": iat,
                "exp": iat + self.ttl_s,
                "jti": uuid.uuid4().hex,
            }
            self._token = sign(claims, self.key, self.kid)
            self._exp = iat + self.ttl_s
        return self._token

    def metadata(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token()}"}

    def jwk(self) -> dict[str, str]:
        """The public JWK that verifies this identity's tokens (Istio's service jwtRule,
        served by the auth service's GetServiceJwks)."""
        return okp_jwk(self.key.public_key(), self.kid)

    def attach(self, channel: Any) -> Any:
        """Add this service's token to every call on a grpclib Channel that carries none
        (a call forwarding a user's token keeps it)."""
        from grpclib.events import SendRequest, listen

        async def add_token(event: SendRequest) -> None:
            if "authorization" not in event.metadata:
                event.metadata["authorization"] = f"Bearer {self.token()}"

        listen(channel, SendRequest, add_token)
        return channel


_process_identity: ServiceIdentity | None = None


def process_identity() -> ServiceIdentity:
    """This process's service identity: the one `serve()` registered, else one from the
    environment (tools and tests that call services outside `serve()`)."""
    global _process_identity
    if _process_identity is None:
        key = AuthConfig.from_env().service_key
        _process_identity = ServiceIdentity("service", service_signing_key(key))
    return _process_identity


def authenticate_channel(channel: Any) -> Any:
    """Send this process's service token on every call of a grpclib Channel (unless the
    call carries its own authorization). Returns the channel, to wrap its construction."""
    from grpclib.events import SendRequest, listen

    async def add_token(event: SendRequest) -> None:
        if "authorization" not in event.metadata:
            event.metadata["authorization"] = f"Bearer {process_identity().token()}"

    listen(channel, SendRequest, add_token)
    return channel


# ---------------------------------------------------------------- JWKS cache


class JwksCache:
    """Public keys of the auth service by kid. `fetch` returns a JWKS dict; it is called at
    most every `min_refresh_s` (unknown kid) and in any case every `max_age_s`."""

    def __init__(self, fetch: Any, max_age_s: float = 300, min_refresh_s: float = 5) -> None:
        self._fetch = fetch
        self.max_age_s = max_age_s
        self.min_refresh_s = min_refresh_s
        self.keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at = -1e18
        self._lock = asyncio.Lock()

    def load(self, jwks: Mapping[str, Any]) -> None:
        keys = {}
        for jwk in jwks.get("keys", ()):
            pub = public_key_from_jwk(jwk)
            if pub is not None and jwk.get("kid"):
                keys[str(jwk["kid"])] = pub
        self.keys = keys

    async def refresh(self, *, force: bool = False) -> None:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if age < self.min_refresh_s or (not force and age < self.max_age_s):
                return
            self._fetched_at = time.monotonic()
            try:
                self.load(await self._fetch())
            except Exception as exc:  # auth down: keep the keys we have, log, retry later
                log.warning("jwks fetch failed: %s", exc)

    async def get(self, kid: str) -> Ed25519PublicKey | None:
        if time.monotonic() - self._fetched_at > self.max_age_s:
            await self.refresh()
        if kid not in self.keys:
            await self.refresh(force=True)  # a rotated key: the new kid is in the JWKS now
        return self.keys.get(kid)


def grpc_jwks_fetcher(host: str, port: int, timeout_s: float = 2.0) -> Any:
    """JWKS from the auth service's GetJwks over gRPC (public method, no token). The channel
    is traced: a fetch for an unknown kid shows up inside the request that needed it."""
    from google.protobuf.json_format import MessageToDict
    from grpclib.client import Channel

    from services.runtime.tracing import instrument_channel
    from shop.auth.v1 import auth_grpc, auth_pb2

    channel: Channel | None = None

    async def fetch() -> dict[str, Any]:
        nonlocal channel
        if channel is None:
            channel = instrument_channel(Channel(host, port))
        reply = await auth_grpc.AuthServiceStub(channel).GetJwks(
            auth_pb2.GetJwksRequest(), timeout=timeout_s
        )
        return MessageToDict(reply, preserving_proto_field_name=True)

    def close() -> None:
        if channel is not None:
            channel.close()

    fetch.close = close  # type: ignore[attr-defined]
    return fetch


# ---------------------------------------------------------------- the hook


@dataclass(frozen=True)
class AuthConfig:
    """Env: SHOPMESH_<FIELD>; one set for all services (they must agree)."""

    jwt_issuer: str = setting(DEFAULT_ISSUER, help="iss of user access tokens")
    jwt_audience: str = setting(DEFAULT_AUDIENCE, help="aud of user access tokens")
    auth_addr: str = setting("127.0.0.1:50055", help="auth service gRPC address (JWKS)")
    service_key: str = secret(DEV_SERVICE_KEY, help="shared service-token seed (base64url)")
    jwks_max_age_s: float = setting(300.0, help="JWKS cache lifetime")
    jwks_min_refresh_s: float = setting(5.0, help="minimum gap between JWKS fetches")

    @classmethod
    def from_env(cls, environ: Any = None) -> AuthConfig:
        cfg = load(cls, "SHOPMESH", environ)
        if environment(environ) != "dev" and cfg.service_key == DEV_SERVICE_KEY:
            from services.runtime.config import ConfigError

            raise ConfigError("SHOPMESH_SERVICE_KEY: the dev key is refused outside dev")
        return cfg


def bearer(metadata: Mapping[str, str]) -> str | None:
    raw = metadata.get("authorization")
    if not raw:
        return None
    scheme, _, token = str(raw).partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("malformed authorization header")
    return token.strip()


@dataclass
class RuntimeAuth:
    """The auth hook of `serve()`: verifies the bearer token and enforces the access level.
    Also a Resource (open/close) so the JWKS channel closes with the service."""

    config: AuthConfig
    identity: ServiceIdentity
    jwks: JwksCache
    _fetch: Any = None

    @classmethod
    def from_env(cls, service: str, environ: Any = None) -> RuntimeAuth:
        cfg = AuthConfig.from_env(environ)
        host, _, port = cfg.auth_addr.rpartition(":")
        fetch = grpc_jwks_fetcher(host or "127.0.0.1", int(port))
        global _process_identity
        _process_identity = ServiceIdentity(service, service_signing_key(cfg.service_key))
        return cls(
            cfg,
            _process_identity,
            JwksCache(fetch, cfg.jwks_max_age_s, cfg.jwks_min_refresh_s),
            fetch,
        )

    async def open(self) -> None:
        return None  # the JWKS is fetched on the first token, not at start (auth may be down)

    async def close(self) -> None:
        close = getattr(self._fetch, "close", None)
        if close is not None:
            close()

    async def principal_of(self, token: str) -> Principal:
        header = unverified_header(token)
        kid = header["kid"]
        if kid == self.identity.kid:
            claims = verify(
                token,
                {kid: self.identity.key.public_key()},
                issuer=SERVICE_ISSUER,
                audience=SERVICE_AUDIENCE,
            )
            return Principal(
                claims["sub"], frozenset([SERVICE_ROLE]), "service", str(claims.get("jti", ""))
            )
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
        return Principal(claims["sub"], user_roles, "user", str(claims.get("jti", "")))

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
        return check_access(access, p, call.policy.method)


def check_access(access: Access, p: Principal, method: str = "") -> Principal:
    """The schema's access level against a verified principal."""
    if access is Access.USER and (p.kind == "user" or p.is_service):
        return p
    # A service is the platform itself (its key can already reach internal methods and act
    # for any user), so admin methods admit it too: setup and tooling run as a service.
    if access is Access.ADMIN and (p.is_admin or p.is_service):
        return p
    if access is Access.INTERNAL and p.is_service:
        return p
    if access is Access.PUBLIC:
        return p
    # UNSPECIFIED (no policy in the schema) is refused for everyone: fail closed.
    raise PermissionDenied(f"{method or 'method'}: not allowed for this caller")
