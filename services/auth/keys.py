"""Signing keys: generated on first start, stored in PostgreSQL with the private half
encrypted (AES-256-GCM under AUTH_KEY_ENCRYPTION_KEY, the kid as associated data), rotated
every `rotate_s`.

Rotation without a stale-cache window: a new key is stored `prepublish_s` before it starts
signing, so it is in the JWKS (and in Envoy's and the services' caches) before the first
token carries its kid. An old key stays in the JWKS until the last token it signed has
expired (`access_ttl_s` after its successor took over, plus clock skew).
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from services.runtime.auth import CLOCK_SKEW_S, okp_jwk, sign

log = logging.getLogger(__name__)


def parse_kek(text: str) -> bytes:
    """AUTH_KEY_ENCRYPTION_KEY: 32 bytes, base64url (with or without padding)."""
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(raw) != 32:
        raise ValueError("AUTH_KEY_ENCRYPTION_KEY must be 32 bytes (base64url)")
    return raw


def seal(kek: bytes, kid: str, key: Ed25519PrivateKey) -> bytes:
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    nonce = os.urandom(12)
    return nonce + AESGCM(kek).encrypt(nonce, raw, kid.encode())


def unseal(kek: bytes, kid: str, blob: bytes) -> Ed25519PrivateKey:
    raw = AESGCM(kek).decrypt(blob[:12], blob[12:], kid.encode())
    return Ed25519PrivateKey.from_private_bytes(raw)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    activate_at: datetime
    private: Ed25519PrivateKey


@dataclass(frozen=True)
class StoredKey:
    kid: str
    activate_at: datetime
    sealed: bytes


def new_kid(now: datetime) -> str:
    return f"{now:%Y%m%d%H%M}-{secrets.token_hex(4)}"


class KeyRing:
    """The Signer port: current key, published keys, rotation decisions."""

    def __init__(
        self,
        kek: bytes,
        access_ttl_s: int,
        rotate_s: float,
        prepublish_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.kek = kek
        self.access_ttl_s = access_ttl_s
        self.rotate_s = rotate_s
        self.prepublish_s = prepublish_s
        self.clock = clock
        self.keys: list[SigningKey] = []  # by activate_at

    def load(self, stored: list[StoredKey]) -> None:
        self.keys = sorted(
            (SigningKey(s.kid, s.activate_at, unseal(self.kek, s.kid, s.sealed)) for s in stored),
            key=lambda k: k.activate_at,
        )

    def current(self) -> SigningKey:
        now = self.clock()
        live = [k for k in self.keys if k.activate_at <= now]
        if not live:
            raise RuntimeError("no signing key loaded")
        return live[-1]

    def sign(self, claims: Mapping[str, Any]) -> str:
        key = self.current()
        return sign(claims, key.private, key.kid)

    def published(self) -> list[SigningKey]:
        now = self.clock()
        grace = timedelta(seconds=self.access_ttl_s + CLOCK_SKEW_S)
        out = []
        for i, k in enumerate(self.keys):
            successor = self.keys[i + 1] if i + 1 < len(self.keys) else None
            # Retired once its successor has signed for longer than any token lives.
            if successor is None or successor.activate_at + grace > now:
                out.append(k)
        return out

    def jwks(self) -> list[dict[str, str]]:
        return [okp_jwk(k.private.public_key(), k.kid) for k in self.published()]

    def next_key_due(self) -> StoredKey | None:
        """A new key to store now, or None. The first key signs at once (nobody can hold a
        token yet); later ones are published `prepublish_s` ahead."""
        now = self.clock()
        if not self.keys:
            kid = new_kid(now)
            return StoredKey(kid, now, seal(self.kek, kid, Ed25519PrivateKey.generate()))
        newest = self.keys[-1]
        due = newest.activate_at + timedelta(seconds=self.rotate_s - self.prepublish_s)
        if now < due:
            return None
        activate = max(now, newest.activate_at) + timedelta(seconds=self.prepublish_s)
        kid = new_kid(activate)
        return StoredKey(kid, activate, seal(self.kek, kid, Ed25519PrivateKey.generate()))
