"""JWT signing and verification (services/runtime/auth.py): only EdDSA tokens signed by a
known key for our issuer and audience, unexpired, are accepted; joserfc agrees with us."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.runtime.auth import (
    ServiceIdentity,
    TokenError,
    b64url,
    okp_jwk,
    service_signing_key,
    sign,
    verify,
)

ISS, AUD = "https://auth.test", "shop"


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def claims(**over: object) -> dict:
    now = int(time.time())
    base = {"iss": ISS, "aud": AUD, "sub": "u1", "roles": ["customer"], "iat": now, "exp": now + 60}
    return {**base, **over}


def check(token: str, key: Ed25519PrivateKey, kid: str = "k1") -> dict:
    return verify(token, {kid: key.public_key()}, issuer=ISS, audience=AUD)


def test_valid_token_round_trips(key: Ed25519PrivateKey) -> None:
    assert check(sign(claims(), key, "k1"), key)["sub"] == "u1"


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"aud": "someone-else"}, "wrong audience"),
        ({"iss": "https://evil"}, "wrong issuer"),
        ({"sub": ""}, "sub missing"),
        ({"iat": int(time.time()) + 3600}, "issued in the future"),
    ],
)
def test_bad_claims_are_refused(key: Ed25519PrivateKey, over: dict, reason: str) -> None:
    with pytest.raises(TokenError, match=reason):
        check(sign(claims(**over), key, "k1"), key)


def test_audience_list_containing_ours_is_accepted(key: Ed25519PrivateKey) -> None:
    assert check(sign(claims(aud=["x", AUD]), key, "k1"), key)["aud"] == ["x", AUD]


def test_other_key_signature_is_refused(key: Ed25519PrivateKey) -> None:
    forged = sign(claims(), Ed25519PrivateKey.generate(), "k1")
    with pytest.raises(TokenError, match="bad signature"):
        check(forged, key)


def test_tampered_payload_is_refused(key: Ed25519PrivateKey) -> None:
    head, _, sig = sign(claims(), key, "k1").split(".")
    body = b64url(json.dumps(claims(roles=["admin"])).encode())
    with pytest.raises(TokenError, match="bad signature"):
        check(f"{head}.{body}.{sig}", key)


def test_unknown_kid_is_refused(key: Ed25519PrivateKey) -> None:
    with pytest.raises(TokenError, match="unknown kid"):
        check(sign(claims(), key, "k2"), key)


def _raw(header: dict, payload: dict, sig: bytes = b"") -> str:
    h = b64url(json.dumps(header).encode())
    p = b64url(json.dumps(payload).encode())
    return f"{h}.{p}.{b64url(sig)}"


def test_alg_none_is_refused(key: Ed25519PrivateKey) -> None:
    with pytest.raises(TokenError, match="not accepted"):
        check(_raw({"alg": "none", "kid": "k1"}, claims()), key)


def test_hs256_with_the_public_key_as_secret_is_refused(key: Ed25519PrivateKey) -> None:
    """The classic algorithm confusion: HMAC keyed with the (public) JWK bytes."""
    secret = json.dumps(okp_jwk(key.public_key(), "k1")).encode()
    h = b64url(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
    p = b64url(json.dumps(claims()).encode())
    mac = hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest()
    with pytest.raises(TokenError, match="not accepted"):
        check(f"{h}.{p}.{b64url(mac)}", key)


@pytest.mark.parametrize("garbage", ["", "a.b", "a.b.c.d", "!!!.e30.x", "x" * 5000])
def test_malformed_tokens_are_refused(key: Ed25519PrivateKey, garbage: str) -> None:
    with pytest.raises(TokenError):
        check(garbage, key)


def test_joserfc_reads_our_tokens_and_we_read_joserfcs(key: Ed25519PrivateKey) -> None:
    from joserfc import jwk, jwt

    pub = jwk.OKPKey.import_key(okp_jwk(key.public_key(), "k1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc: "EdDSA deprecated via RFC 9864"
        decoded = jwt.decode(sign(claims(), key, "k1"), pub, algorithms=["EdDSA"])
        assert decoded.claims["sub"] == "u1"
        assert decoded.header["kid"] == "k1"
        private = jwk.OKPKey.import_key({**okp_jwk(key.public_key(), "k1"), "d": _private_d(key)})
        theirs = jwt.encode({"alg": "EdDSA", "kid": "k1"}, claims(), private, algorithms=["EdDSA"])
    assert check(theirs, key)["iss"] == ISS


def _private_d(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    return b64url(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def test_service_token_is_cached_and_renewed_before_expiry() -> None:
    ident = ServiceIdentity(
        "order", service_signing_key(base64.urlsafe_b64encode(b"s" * 32).decode().rstrip("="))
    )
    now = time.time()
    first = ident.token(now)
    assert ident.token(now + 10) == first
    assert ident.token(now + ident.ttl_s - 30) != first  # renewed a minute before expiry
