"""Identity and access in every service: who is calling (`Principal`) and may they call this
method (the schema's `shop.mesh.v1.policy` access level). `serve()` installs `RuntimeAuth` as
the auth hook of every service, so a call that bypasses Envoy is checked the same way.

Tokens (one algorithm everywhere, pinned: EdDSA / Ed25519, a JWS compact JWT with a `kid`):

- user access tokens: issued by the auth service (iss = SHOPMESH_JWT_ISSUER, aud =
  SHOPMESH_JWT_AUDIENCE, sub = user id, roles, exp, iat, jti). Verified here against the JWKS
  fetched from the auth service (GetJwks), cached, refetched on an unknown kid (at most once
  per `jwks_min_refresh_s`, so random kids cannot hammer the auth service).
- service tokens: each service signs its own with its own Ed25519 key (the seed in
  <SERVICE>_IDENTITY_KEY; a dev default derived from the service name only with
  SHOPMESH_ENV=dev): iss = "shopmesh-service/<name>", aud = SERVICE_AUDIENCE, sub = <name>,
  kid naming the key. The auth service publishes every service's public keys (GetServiceJwks,
  from its non-secret AUTH_SERVICE_PUBLIC_KEYS), each bound to one service name; a service
  token is verified against those keys (cached, refetched on an unknown kid like the user
  JWKS) and refused unless its iss and sub name the service its key belongs to, so a
  leaked notification key can sign only as notification. Envoy's edge never accepts them.

Access levels (the schema's policy): public -> anyone (a token is not even read: a stale
token never breaks the catalog or RefreshToken; Envoy has no rule for them either); user ->
a valid user token; admin -> a valid user token with the admin role; internal -> nobody but
the services below. On any level a service token passes only if the method's
`policy.callers` names that service (an internal method names at least one; a user or admin
method may grant a service explicitly). Missing or invalid token -> UNAUTHENTICATED, valid
but not allowed -> PERMISSION_DENIED.

The `x-shop-jwt-payload` header Envoy sets is never trusted here (a direct call could forge
it); the principal always comes from a signature this package verified.

Modules: jws (EdDSA JWS compact), identity (a service's own key and tokens), keys (the
published keys, cached), hook (principal, RuntimeAuth, check_access). Everything is
re-exported here: import from services.runtime.auth.
"""

from __future__ import annotations

from services.runtime.auth.hook import (
    ADMIN_ROLE,
    ANONYMOUS,
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    PAYLOAD_HEADER,
    AuthConfig,
    Principal,
    RuntimeAuth,
    bearer,
    check_access,
    current_principal,
    require_admin,
    require_self_or_admin,
)
from services.runtime.auth.identity import (
    SERVICE_AUDIENCE,
    SERVICE_ISSUER_PREFIX,
    SERVICE_KID_PREFIX,
    SERVICE_NAME,
    SERVICE_ROLE,
    IdentityConfig,
    ServiceIdentity,
    authenticate_channel,
    dev_identity_key,
    process_identity,
    public_x,
    register_process_identity,
    service_issuer,
    service_kid,
    service_signing_key,
)
from services.runtime.auth.jws import (
    ALG,
    CLOCK_SKEW_S,
    MAX_TOKEN_BYTES,
    TokenError,
    b64url,
    b64url_decode,
    okp_jwk,
    public_key_from_jwk,
    sign,
    unverified_header,
    verify,
)
from services.runtime.auth.keys import (
    AuthKeysClient,
    JwksCache,
    ServiceKeyCache,
    grpc_jwks_fetcher,
)

__all__ = [
    "ADMIN_ROLE",
    "ALG",
    "ANONYMOUS",
    "CLOCK_SKEW_S",
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "MAX_TOKEN_BYTES",
    "PAYLOAD_HEADER",
    "SERVICE_AUDIENCE",
    "SERVICE_ISSUER_PREFIX",
    "SERVICE_KID_PREFIX",
    "SERVICE_NAME",
    "SERVICE_ROLE",
    "AuthConfig",
    "AuthKeysClient",
    "IdentityConfig",
    "JwksCache",
    "Principal",
    "RuntimeAuth",
    "ServiceIdentity",
    "ServiceKeyCache",
    "TokenError",
    "authenticate_channel",
    "b64url",
    "b64url_decode",
    "bearer",
    "check_access",
    "current_principal",
    "dev_identity_key",
    "grpc_jwks_fetcher",
    "okp_jwk",
    "process_identity",
    "public_key_from_jwk",
    "public_x",
    "register_process_identity",
    "require_admin",
    "require_self_or_admin",
    "service_issuer",
    "service_kid",
    "service_signing_key",
    "sign",
    "unverified_header",
    "verify",
]
