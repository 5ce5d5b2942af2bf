"""The public keys verifiers need, fetched from the auth service and cached: user-token keys
(GetJwks) and the services' identity keys with the service each belongs to (GetServiceJwks).
An unknown kid refetches (at most every `min_refresh_s`), and in any case every `max_age_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.runtime.auth.jws import public_key_from_jwk

log = logging.getLogger("services.runtime.auth")


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


class ServiceKeyCache(JwksCache):
    """The services' published public keys (GetServiceJwks), each with the one service it
    belongs to (`key_services`). A key without an owner is dropped: it could verify a
    token for no one in particular."""

    def __init__(self, fetch: Any, max_age_s: float = 300, min_refresh_s: float = 5) -> None:
        super().__init__(fetch, max_age_s, min_refresh_s)
        self.owners: dict[str, str] = {}

    def load(self, jwks: Mapping[str, Any]) -> None:
        owners = {str(k): str(v) for k, v in (jwks.get("key_services") or {}).items()}
        super().load(jwks)
        self.keys = {kid: key for kid, key in self.keys.items() if owners.get(kid)}
        self.owners = {kid: owners[kid] for kid in self.keys}

    async def owned(self, kid: str) -> tuple[str, Ed25519PublicKey] | None:
        """(service, public key) of `kid`, refetching once for an unknown one."""
        key = await self.get(kid)
        owner = self.owners.get(kid)
        return (owner, key) if key is not None and owner else None


class AuthKeysClient:
    """The auth service's public keys over gRPC: GetJwks (user tokens) and GetServiceJwks
    (service identities), public methods, one channel. The channel is traced: a fetch for
    an unknown kid shows up inside the request that needed it."""

    def __init__(self, host: str, port: int, timeout_s: float = 2.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._channel: Any = None

    def _stub(self) -> Any:
        from grpclib.client import Channel

        from services.runtime.tracing import instrument_channel
        from shop.auth.v1 import auth_grpc

        if self._channel is None:
            self._channel = instrument_channel(Channel(self.host, self.port))
        return auth_grpc.AuthServiceStub(self._channel)

    async def _fetch(self, method: str, request: Any) -> dict[str, Any]:
        """One call, retried once on a new connection if the first one failed on the
        transport (an auth instance going away during a rollout answers UNAVAILABLE)."""
        from google.protobuf.json_format import MessageToDict
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError, StreamTerminatedError

        for attempt in (1, 2):
            try:
                reply = await getattr(self._stub(), method)(request, timeout=self.timeout_s)
                return MessageToDict(reply, preserving_proto_field_name=True)
            except (GRPCError, OSError, StreamTerminatedError) as exc:
                if attempt == 2 or getattr(exc, "status", Status.UNAVAILABLE) not in (
                    Status.UNAVAILABLE,
                ):
                    raise
                self.close()
        raise AssertionError("unreachable")

    async def user_jwks(self) -> dict[str, Any]:
        from shop.auth.v1 import auth_pb2

        return await self._fetch("GetJwks", auth_pb2.GetJwksRequest())

    async def service_jwks(self) -> dict[str, Any]:
        from shop.auth.v1 import auth_pb2

        return await self._fetch("GetServiceJwks", auth_pb2.GetServiceJwksRequest())

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def grpc_jwks_fetcher(host: str, port: int, timeout_s: float = 2.0) -> Any:
    """JWKS of user tokens from the auth service's GetJwks (a fetch function with .close)."""
    client = AuthKeysClient(host, port, timeout_s)

    async def fetch() -> dict[str, Any]:
        return await client.user_jwks()

    fetch.close = client.close  # type: ignore[attr-defined]
    return fetch
