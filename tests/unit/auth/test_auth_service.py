"""Auth use cases with fakes: login, throttle and lockout, refresh rotation, reuse, logout."""

from __future__ import annotations

import pytest

from services.auth.domain import (
    InvalidCredentialsError,
    LoginThrottledError,
    RefreshRejectedError,
    ThrottlePolicy,
)
from services.auth.keys import KeyRing
from services.auth.service import AuthService, TokenSettings
from services.runtime.auth import verify
from tests.unit.auth.fakes import Clock, FakeStore, FakeUsers

ISS, AUD = "https://auth.test", "shop"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def users() -> FakeUsers:
    u = FakeUsers()
    u.add("alice@example.com", "correct horse", "alice")
    u.add("root@example.com", "root pw", "root", ("admin", "customer"))
    return u


@pytest.fixture
def svc(clock: Clock, users: FakeUsers) -> AuthService:
    ring = KeyRing(b"k" * 32, 900, 86400, 300, clock)
    ring.load([ring.next_key_due()])
    return AuthService(
        users,
        FakeStore(),
        ring,
        TokenSettings(ISS, AUD, access_ttl_s=900, refresh_ttl_s=3600),
        ThrottlePolicy(max_attempts=10, free_failures=3, window_s=60, base_lock_s=2),
        ThrottlePolicy(max_attempts=30, free_failures=20, window_s=60),
        clock,
    )


def claims_of(svc: AuthService, token: str, clock: Clock) -> dict:
    key = svc.signer.current()  # type: ignore[attr-defined]
    return verify(
        token, {key.kid: key.private.public_key()}, issuer=ISS, audience=AUD,
        now=clock().timestamp(),
    )  # fmt: skip


async def test_login_issues_a_short_lived_token_with_roles(svc: AuthService, clock: Clock) -> None:
    pair = await svc.login("root@example.com", "root pw", "10.0.0.1")
    c = claims_of(svc, pair.access_token, clock)
    assert (c["sub"], c["roles"], c["exp"] - c["iat"]) == ("root", ["admin", "customer"], 900)
    assert c["jti"] and pair.user_id == "root" and len(pair.refresh_token) >= 43


async def test_unknown_email_and_wrong_password_get_the_same_error(svc: AuthService) -> None:
    errors = []
    for email, pw in (("nobody@example.com", "x"), ("alice@example.com", "wrong")):
        with pytest.raises(InvalidCredentialsError) as exc:
            await svc.login(email, pw, "10.0.0.1")
        errors.append((type(exc.value), exc.value.message))
    assert errors[0] == errors[1]


async def test_repeated_failures_lock_the_account_with_growing_backoff(
    svc: AuthService, clock: Clock, users: FakeUsers
) -> None:
    for _ in range(3):
        with pytest.raises(InvalidCredentialsError):
            await svc.login("alice@example.com", "wrong", "10.0.0.1")
    calls = users.calls
    with pytest.raises(LoginThrottledError) as exc:  # even the right password is not checked
        await svc.login("alice@example.com", "correct horse", "10.0.0.2")
    assert exc.value.retry_after_s == 2 and users.calls == calls
    clock.advance(2)
    with pytest.raises(InvalidCredentialsError):
        await svc.login("alice@example.com", "wrong", "10.0.0.1")
    with pytest.raises(LoginThrottledError) as exc:
        await svc.login("alice@example.com", "correct horse", "10.0.0.2")
    assert exc.value.retry_after_s == 4  # doubled
    clock.advance(4)
    assert (await svc.login("alice@example.com", "correct horse", "10.0.0.2")).user_id == "alice"
    with pytest.raises(InvalidCredentialsError):  # success reset the account's failures
        await svc.login("alice@example.com", "wrong", "10.0.0.1")


async def test_the_account_lock_ignores_email_case(svc: AuthService) -> None:
    for email in ("alice@example.com", "ALICE@example.com", "Alice@Example.com"):
        with pytest.raises(InvalidCredentialsError):
            await svc.login(email, "wrong", "10.0.0.1")
    with pytest.raises(LoginThrottledError):
        await svc.login("alice@example.com", "correct horse", "10.0.0.1")


async def test_failures_across_accounts_lock_the_address(svc: AuthService) -> None:
    for i in range(20):  # one address guessing many accounts: each account stays under 3
        with pytest.raises(InvalidCredentialsError):
            await svc.login(f"user{i}@example.com", "x", "10.9.9.9")
    with pytest.raises(LoginThrottledError):
        await svc.login("alice@example.com", "correct horse", "10.9.9.9")
    assert (await svc.login("alice@example.com", "correct horse", "10.0.0.1")).user_id == "alice"


async def test_attempts_per_window_are_rate_limited_whatever_the_outcome(
    svc: AuthService, clock: Clock
) -> None:
    for _ in range(10):
        await svc.login("alice@example.com", "correct horse", "10.0.0.1")
    with pytest.raises(LoginThrottledError) as exc:
        await svc.login("alice@example.com", "correct horse", "10.0.0.1")
    assert 1 <= exc.value.retry_after_s <= 60
    clock.advance(60)  # a new window
    assert (await svc.login("alice@example.com", "correct horse", "10.0.0.1")).user_id == "alice"


async def test_refresh_rotates_and_the_old_token_is_spent(svc: AuthService) -> None:
    first = await svc.login("alice@example.com", "correct horse", "")
    second = await svc.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token and second.user_id == "alice"
    third = await svc.refresh(second.refresh_token)
    assert third.user_id == "alice"


async def test_reusing_a_spent_token_revokes_the_whole_family(
    svc: AuthService, clock: Clock
) -> None:
    first = await svc.login("alice@example.com", "correct horse", "")
    second = await svc.refresh(first.refresh_token)
    clock.advance(svc.tokens.refresh_reuse_grace_s + 1)
    with pytest.raises(RefreshRejectedError):
        await svc.refresh(first.refresh_token)  # the thief (or the victim) replays it
    with pytest.raises(RefreshRejectedError):
        await svc.refresh(second.refresh_token)  # the successor died with the family
    other = await svc.login("alice@example.com", "correct horse", "")
    assert (await svc.refresh(other.refresh_token)).user_id == "alice"  # other sessions live


async def test_a_token_spent_moments_ago_is_honoured_again_within_the_grace_window(
    svc: AuthService, clock: Clock
) -> None:
    first = await svc.login("alice@example.com", "correct horse", "")
    lost = await svc.refresh(first.refresh_token)  # the answer a reload aborted
    clock.advance(svc.tokens.refresh_reuse_grace_s / 2)
    again = await svc.refresh(first.refresh_token)
    assert again.refresh_token not in (first.refresh_token, lost.refresh_token)
    assert (await svc.refresh(again.refresh_token)).user_id == "alice"  # family alive
    clock.advance(svc.tokens.refresh_reuse_grace_s + 1)
    with pytest.raises(RefreshRejectedError):
        await svc.refresh(first.refresh_token)  # later, the same replay revokes


async def test_expired_and_unknown_refresh_tokens_are_rejected(
    svc: AuthService, clock: Clock
) -> None:
    pair = await svc.login("alice@example.com", "correct horse", "")
    with pytest.raises(RefreshRejectedError):
        await svc.refresh("x" * 43)
    clock.advance(3601)
    with pytest.raises(RefreshRejectedError):
        await svc.refresh(pair.refresh_token)


async def test_logout_revokes_the_family_and_is_idempotent(svc: AuthService) -> None:
    pair = await svc.login("alice@example.com", "correct horse", "")
    rotated = await svc.refresh(pair.refresh_token)
    await svc.logout(rotated.refresh_token)
    await svc.logout(rotated.refresh_token)
    await svc.logout("never-issued-token-xxxxxxxx")
    with pytest.raises(RefreshRejectedError):
        await svc.refresh(rotated.refresh_token)


async def test_refresh_tokens_are_stored_hashed(svc: AuthService) -> None:
    pair = await svc.login("alice@example.com", "correct horse", "")
    store: FakeStore = svc.store  # type: ignore[assignment]
    assert all(pair.refresh_token.encode() not in h for h in store.tokens)
    assert all(len(h) == 32 for h in store.tokens)
