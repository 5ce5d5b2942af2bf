"""One identity per service: its own Ed25519 key (seed in <SERVICE>_IDENTITY_KEY; in dev a
key derived from its name), the service tokens it signs (iss "shopmesh-service/<name>", sub
<name>, a kid naming the key), and the channels that carry them. The public halves are
published by the auth service (services/auth/service_keys.py) and bound to the name there.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.runtime.auth.jws import b64url, b64url_decode, okp_jwk, sign
from services.runtime.config import ConfigError, environment, load, secret

# A service's tokens carry iss = SERVICE_ISSUER_PREFIX + its name (service_issuer()).
SERVICE_ISSUER_PREFIX = "shopmesh-service/"
SERVICE_AUDIENCE = "shopmesh-internal"
SERVICE_KID_PREFIX = "svc-"  # service_kid(): picks the key set; the owner comes from auth
SERVICE_ROLE = "service"
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def service_issuer(name: str) -> str:
    """The iss of `name`'s service tokens (Envoy and Istio bind each to that service's keys)."""
    return SERVICE_ISSUER_PREFIX + name


def service_kid(name: str, x: str) -> str:
    """The kid of a service's public key `x` (base64url): the service and a key digest, so
    the signer and the auth service name a key alike and a log line says whose it is."""
    return f"{SERVICE_KID_PREFIX}{name}-{hashlib.sha256(x.encode()).hexdigest()[:12]}"


def dev_identity_key(name: str) -> str:
    """The dev seed of service `name` (well known, derived from the name: dev only)."""
    return b64url(hashlib.sha256(b"shopmesh-dev-identity-key:" + name.encode()).digest())


def service_signing_key(seed_b64: str) -> Ed25519PrivateKey:
    seed = hashlib.sha256(b"shopmesh-service-key:" + b64url_decode(seed_b64)).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_x(key: Ed25519PrivateKey) -> str:
    """The JWK `x` (base64url raw public key) of a signing key: what AUTH_SERVICE_PUBLIC_KEYS
    lists for a service."""
    return okp_jwk(key.public_key(), "")["x"]


@dataclass(frozen=True)
class IdentityConfig:
    """Env: <SERVICE>_IDENTITY_KEY, read by serve() for the service it runs."""

    identity_key: str = secret(
        help="this service's own identity: Ed25519 seed (32 bytes, base64url) signing its "
        "service tokens; its public key must be in the auth service's AUTH_SERVICE_PUBLIC_KEYS "
        "(dev: derived from the service name)"
    )

    @classmethod
    def from_env(cls, service: str, environ: Any = None) -> IdentityConfig:
        if not SERVICE_NAME.match(service):
            raise ConfigError(f"service name {service!r}: expected [a-z][a-z0-9-]*")
        prefix = service.upper().replace("-", "_")
        dev_key = dev_identity_key(service)
        cfg = load(cls, prefix, environ, identity_key=dev_key)
        var = f"{prefix}_IDENTITY_KEY"
        if environment(environ) != "dev" and cfg.identity_key == dev_key:
            raise ConfigError(f"{var}: the dev key is refused outside dev")
        try:
            if len(b64url_decode(cfg.identity_key.rstrip("="))) != 32:
                raise ValueError
        except (ValueError, binascii.Error):
            raise ConfigError(f"{var}: expected 32 bytes, base64url") from None
        return cfg


class ServiceIdentity:
    """One service's identity: mints its tokens (cached, renewed a minute before expiry)."""

    def __init__(self, name: str, key: Ed25519PrivateKey, ttl_s: int = 600) -> None:
        self.name = name
        self.key = key
        self.issuer = service_issuer(name)
        self.kid = service_kid(name, public_x(key))
        self.ttl_s = ttl_s
        self._token = ""
        self._exp = 0.0

    @classmethod
    def from_env(cls, name: str, environ: Any = None) -> ServiceIdentity:
        """`name`'s identity from <NAME>_IDENTITY_KEY (in dev, its derived dev key: how a
        test or tool acts as, say, order)."""
        seed = IdentityConfig.from_env(name, environ).identity_key
        return cls(name, service_signing_key(seed.rstrip("=")))

    def token(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if now > self._exp - 60:
            iat = int(now)
            claims = {
                "iss": self.issuer,
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
        """The public JWK that verifies this identity's tokens."""
        return okp_jwk(self.key.public_key(), self.kid)

    def attach(self, channel: Any) -> Any:
        """Add this identity's token to every call on a grpclib Channel that carries none
        (a call forwarding a user's token keeps it)."""
        return authenticate_channel(channel, self)


_process_identity: ServiceIdentity | None = None


def register_process_identity(identity: ServiceIdentity) -> ServiceIdentity:
    """Make `identity` the one this process's service channels sign with. serve() does it
    (RuntimeAuth.from_env) for the service it runs; a test running a service without
    serve() does it for that service."""
    global _process_identity
    _process_identity = identity
    return identity


def process_identity() -> ServiceIdentity:
    """This process's service identity: the one serve() registered. There is no anonymous
    fallback: a tool or test calling as a service names it (ServiceIdentity.from_env)."""
    if _process_identity is None:
        raise RuntimeError(
            "no service identity registered in this process: serve() registers the "
            "service's own; outside it pass one (ServiceIdentity.from_env(name))"
        )
    return _process_identity


def authenticate_channel(channel: Any, identity: ServiceIdentity | None = None) -> Any:
    """Send a service token on every call of a grpclib Channel (unless the call carries its
    own authorization): `identity`'s, or this process's service identity (looked up per
    call, so a channel made before serve() registers it works). Returns the channel."""
    from grpclib.events import SendRequest, listen

    from services.runtime.transport import tune_channel

    def own() -> str:
        who = identity if identity is not None else process_identity()
        return f"Bearer {who.token()}"

    async def add_token(event: SendRequest) -> None:
        if "authorization" not in event.metadata:
            event.metadata["authorization"] = own()

    def own_bytes() -> bytes | None:
        try:
            return own().encode()
        except RuntimeError:  # no identity registered: nothing of ours to index
            return None

    listen(channel, SendRequest, add_token)
    # The token this channel adds is indexed in HPACK; any other stays never indexed.
    return tune_channel(channel, own_bytes)
