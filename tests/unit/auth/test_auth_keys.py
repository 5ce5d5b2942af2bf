"""Signing keys: sealed at rest, rotated with pre-publication, retired after their tokens."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auth.keys import KeyRing, seal, unseal
from services.runtime.auth import verify
from tests.unit.auth.fakes import Clock

KEK = b"k" * 32
HOUR = 3600


def ring(clock: Clock) -> KeyRing:
    return KeyRing(KEK, access_ttl_s=900, rotate_s=24 * HOUR, prepublish_s=300, clock=clock)


def store_due(r: KeyRing, stored: list) -> None:
    new = r.next_key_due()
    if new is not None:
        stored.append(new)
    r.load(stored)


def test_sealed_private_key_needs_the_kek_and_its_kid() -> None:
    key = Ed25519PrivateKey.generate()
    blob = seal(KEK, "kid1", key)
    assert unseal(KEK, "kid1", blob).public_key() == key.public_key()
    with pytest.raises(InvalidTag):
        unseal(b"x" * 32, "kid1", blob)
    with pytest.raises(InvalidTag):
        unseal(KEK, "kid2", blob)  # a sealed key moved to another row


def test_first_key_signs_at_once_and_no_second_key_before_due() -> None:
    clock, stored = Clock(), []
    r = ring(clock)
    store_due(r, stored)
    assert len(stored) == 1 and r.current().kid == stored[0].kid
    clock.advance(23 * HOUR)
    store_due(r, stored)
    assert len(stored) == 1


def test_rotation_publishes_before_signing_and_retires_after_tokens_expire() -> None:
    clock, stored = Clock(), []
    r = ring(clock)
    store_due(r, stored)
    old = r.current().kid
    clock.advance(24 * HOUR - 300)  # due: the next key is stored now, signs in 300 s
    store_due(r, stored)
    assert len(stored) == 2
    new = stored[1].kid
    assert r.current().kid == old
    assert {k["kid"] for k in r.jwks()} == {old, new}  # published ahead
    clock.advance(300)
    assert r.current().kid == new
    # The last token of the old key was signed just before; it lives 900 s (+30 s skew).
    clock.advance(900 + 30 - 1)
    assert old in {k["kid"] for k in r.jwks()}
    clock.advance(2)
    assert {k["kid"] for k in r.jwks()} == {new}


def test_signed_token_verifies_with_the_published_key() -> None:
    clock, stored = Clock(), []
    r = ring(clock)
    store_due(r, stored)
    now = int(clock().timestamp())
    token = r.sign({"iss": "i", "aud": "a", "sub": "u", "iat": now, "exp": now + 60})
    pub = {r.current().kid: r.current().private.public_key()}
    assert verify(token, pub, issuer="i", audience="a", now=now)["sub"] == "u"
