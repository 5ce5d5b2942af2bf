"""Auth service configuration: one frozen dataclass, AUTH_* variables (plus the shared
SHOPMESH_JWT_ISSUER / _AUDIENCE every service and the mesh generator read, so issuer and
verifiers cannot disagree)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from services.auth.keys import parse_kek
from services.auth.service_keys import dev_key_in, dev_public_keys, parse_public_keys
from services.runtime.auth import AuthConfig
from services.runtime.config import ConfigError, environment, load, secret, setting
from services.runtime.db import DatabaseConfig
from services.runtime.server import ServerConfig
from shop.topology import SERVICES

PREFIX = "AUTH"
# 32 zero-free bytes, base64url; accepted only with SHOPMESH_ENV=dev.
DEV_KEK = "c2hvcG1lc2gtZGV2LWtleS1lbmNyeXB0aW9uLWtleSE"


@dataclass(frozen=True)
class AuthServiceConfig:
    access_ttl_s: int = setting(900, help="access token lifetime")
    refresh_ttl_s: int = setting(14 * 86400, help="refresh token lifetime")
    refresh_reuse_grace_s: float = setting(
        5.0, help="a refresh token spent this recently may be presented again (reload races)"
    )
    key_rotate_hours: float = setting(24.0, help="a new signing key every N hours")
    key_prepublish_s: float = setting(
        300.0, help="a new key is in the JWKS this long before it signs (> JWKS cache ages)"
    )
    key_check_s: float = setting(30.0, help="how often keys are reloaded / rotation checked")
    key_encryption_key: str = secret(DEV_KEK, help="AES-256 key (base64url) sealing private keys")
    user_addr: str = setting(SERVICES["user"].local_addr, help="user service gRPC address")
    service_public_keys: tuple[str, ...] = setting(
        (),
        help="every service's identity public keys, `name:x` comma-separated (x: the JWK x "
        "of its <NAME>_IDENTITY_KEY; several per name during a rotation), served by "
        "GetServiceJwks; required outside dev (dev: the services' derived dev keys)",
    )
    trusted_proxy_hops: int = setting(
        2, help="x-forwarded-for entries appended by our proxies (NGINX, Envoy)"
    )
    throttle_window_s: int = setting(60, help="rate-limit window")
    account_max_attempts: int = setting(10, help="login attempts per account per window")
    account_free_failures: int = setting(5, help="failures per account before lockout")
    address_max_attempts: int = setting(
        300, help="login attempts per client address per window (NATs share addresses)"
    )
    address_free_failures: int = setting(50, help="failures per address before lockout")
    lock_base_s: float = setting(2.0, help="first lock; doubles with every further failure")
    lock_max_s: float = setting(900.0, help="longest lock")
    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    db: DatabaseConfig = dataclasses.field(default_factory=DatabaseConfig)
    jwt: AuthConfig = dataclasses.field(default_factory=AuthConfig)

    def service_keys(self) -> dict[str, tuple[str, ...]]:
        """AUTH_SERVICE_PUBLIC_KEYS (as checked by from_env): service -> its keys' x."""
        return parse_public_keys(self.service_public_keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuthServiceConfig:
        cfg = load(cls, PREFIX, environ)
        try:
            parse_kek(cfg.key_encryption_key)
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}_KEY_ENCRYPTION_KEY: {exc}") from None
        if cfg.key_prepublish_s * 2 > cfg.key_rotate_hours * 3600:
            raise ConfigError(f"{PREFIX}_KEY_PREPUBLISH_S must be under half the rotation period")
        var = f"{PREFIX}_SERVICE_PUBLIC_KEYS"
        try:
            keys = parse_public_keys(cfg.service_public_keys)
        except ValueError as exc:
            raise ConfigError(f"{var}: {exc}") from None
        dev = environment(environ) == "dev"
        if not keys and not dev:
            raise ConfigError(f"{var} is required outside dev (no service could call another)")
        if not dev and (name := dev_key_in(keys)):
            # Its seed is public (derived from the name): anyone could sign as that service.
            raise ConfigError(f"{var}: {name}'s dev key is refused outside dev")
        keys = keys or dev_public_keys()
        return dataclasses.replace(
            cfg,
            service_public_keys=tuple(f"{n}:{x}" for n, xs in sorted(keys.items()) for x in xs),
            server=ServerConfig.from_env(
                PREFIX, environ, name="auth", grpc_port=SERVICES["auth"].port
            ),
            db=DatabaseConfig.from_env(f"{PREFIX}_DB", environ, name="auth", replica_port=0),
            jwt=AuthConfig.from_env(environ),
        )
