"""JWS compact tokens, EdDSA (Ed25519) only: sign, and verify against keys by kid. Ours
(`cryptography` Ed25519, ~40 lines) because joserfc 1.8 flags "EdDSA" as deprecated by RFC
9864 on every call while Envoy's jwt_authn accepts only that name; unit tests check that
joserfc and this module read each other's tokens. Imports only the stdlib and cryptography.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALG = "EdDSA"
MAX_TOKEN_BYTES = 4096
CLOCK_SKEW_S = 30


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
