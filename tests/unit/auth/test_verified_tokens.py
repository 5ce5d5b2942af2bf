"""The runtime auth hook remembers a verified token until its exp (and no longer than the
JWKS cache keeps keys): the same token is verified once, a forged copy is still refused, and
an entry past its time is verified again."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.runtime.auth import AuthConfig, JwksCache, RuntimeAuth, ServiceIdentity, sign
from services.runtime.auth import hook as hook_module
from services.runtime.auth.jws import CLOCK_SKEW_S
from services.runtime.errors import Unauthenticated
from services.runtime.policy import Access
from tests.unit.auth.test_auth_runtime_hook import AUD, ISS, USER_KEY, Jwks, call

T0 = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(time, "time", c)  # the hook's cache, jws.verify and the JWKS cache
    return c


@pytest.fixture
def verifies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = hook_module.verify

    def counting(token, *args, **kw):
        seen.append(token)
        return real(token, *args, **kw)

    monkeypatch.setattr(hook_module, "verify", counting)
    return seen


def make_hook(**cfg) -> RuntimeAuth:
    return RuntimeAuth(
        AuthConfig(jwt_issuer=ISS, jwt_audience=AUD, **cfg),
        ServiceIdentity.from_env("product", {}),
        JwksCache(Jwks(), max_age_s=300, min_refresh_s=5),
    )


def token(exp_in: float) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": "alice", "roles": ["customer"], "iat": now}
    return sign({**claims, "exp": int(now + exp_in)}, USER_KEY, "u1")


async def test_the_same_token_is_verified_once(clock: Clock, verifies: list[str]) -> None:
    hook = make_hook()
    t = token(60)
    first = await hook(call(Access.USER, t))
    again = await hook(call(Access.USER, t))
    assert first == again and first.subject == "alice"
    assert verifies == [t]


async def test_a_forged_copy_of_a_remembered_token_is_refused(clock: Clock) -> None:
    hook = make_hook()
    t = token(60)
    await hook(call(Access.USER, t))
    head, body, sig = t.split(".")
    forged_sig = ("A" if sig[0] != "A" else "B") + sig[1:]
    other_key = sign({"iss": ISS, "aud": AUD, "sub": "alice", "exp": int(T0) + 60},
                     Ed25519PrivateKey.generate(), "u1")  # fmt: skip
    for forged in (f"{head}.{body}.{forged_sig}", other_key):
        with pytest.raises(Unauthenticated):
            await hook(call(Access.USER, forged))


async def test_an_entry_lives_until_exp_then_the_token_is_verified_again(
    clock: Clock, verifies: list[str]
) -> None:
    hook = make_hook()
    t = token(60)
    await hook(call(Access.USER, t))
    clock.now = T0 + 61  # past exp, within the clock-skew leeway: verified again, admitted
    await hook(call(Access.USER, t))
    assert verifies == [t, t]
    clock.now = T0 + 60 + CLOCK_SKEW_S + 1
    with pytest.raises(Unauthenticated):
        await hook(call(Access.USER, t))


async def test_an_entry_lives_no_longer_than_the_jwks_cache(
    clock: Clock, verifies: list[str]
) -> None:
    hook = make_hook(jwks_max_age_s=10.0)
    t = token(600)
    await hook(call(Access.USER, t))
    clock.now = T0 + 5
    await hook(call(Access.USER, t))
    assert len(verifies) == 1
    clock.now = T0 + 11
    await hook(call(Access.USER, t))
    assert len(verifies) == 2


async def test_zero_turns_the_memory_off(clock: Clock, verifies: list[str]) -> None:
    hook = make_hook(verified_tokens=0)
    t = token(60)
    for _ in range(3):
        await hook(call(Access.USER, t))
    assert verifies == [t, t, t]
