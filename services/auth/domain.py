"""Auth domain: sessions (refresh-token families), the login throttle and their errors.

A session is a family of refresh tokens: login starts one, each refresh spends the token it
is given and adds its successor. A spent token shown again means it was stolen (or the
client is broken): the whole family is revoked, so the thief's successor dies too. Only the
sha256 of a refresh token is stored. Imports only the stdlib and the runtime's error bases.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.runtime.errors import Unauthenticated, Unavailable


class InvalidCredentialsError(Unauthenticated):
    """Unknown email or wrong password: one answer for both, so emails cannot be probed."""

    def __init__(self) -> None:
        super().__init__("invalid email or password")


class LoginThrottledError(Unauthenticated):
    """Too many attempts for this account or client address; the lock says how long."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many sign-in attempts, retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class UserServiceUnavailableError(Unavailable):
    """The user service did not answer the credential check (down, or past the deadline):
    UNAVAILABLE, since no session was started and a retry is safe."""


class RefreshRejectedError(Unauthenticated):
    """Unknown, expired, spent or revoked refresh token (one answer for all)."""

    def __init__(self) -> None:
        super().__init__("invalid refresh token")


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Identity:
    """Who logged in, as the user service vouches."""

    user_id: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class RefreshRecord:
    token_hash: bytes
    family_id: str
    user_id: str
    roles: tuple[str, ...]
    expires_at: datetime
    spent_at: datetime | None = None
    family_revoked_at: datetime | None = None


class RefreshOutcome(enum.Enum):
    ROTATE = "rotate"
    REISSUE = "reissue"  # spent moments ago: the same client retrying, issue again
    REUSE = "reuse"  # a spent token: revoke the family
    REJECT = "reject"  # expired or revoked: nothing to change


def judge_refresh(
    rec: RefreshRecord | None, now: datetime, grace: timedelta = timedelta(0)
) -> RefreshOutcome:
    """What a presented refresh token gets.

    A token spent less than `grace` ago is the same client racing itself, not a thief: a
    browser reload aborts an in-flight refresh after the server rotated the token, so the
    new page presents the old token again. Without the grace window that user is logged
    out (the family revoked); with it the token is honoured once more within the window,
    as Auth0's "reuse interval" does. After the window, reuse revokes the family.
    """
    if rec is None or rec.family_revoked_at is not None:
        return RefreshOutcome.REJECT
    if rec.spent_at is not None:
        if now - rec.spent_at <= grace and rec.expires_at > now:
            return RefreshOutcome.REISSUE
        return RefreshOutcome.REUSE
    if rec.expires_at <= now:
        return RefreshOutcome.REJECT
    return RefreshOutcome.ROTATE


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    user_id: str


# ---------------------------------------------------------------- login throttle


@dataclass(frozen=True)
class ThrottleState:
    """One counter row: per account (hashed email) or per client address."""

    key: str
    window_start: datetime
    attempts: int = 0
    failures: int = 0
    last_failure: datetime | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True)
class ThrottlePolicy:
    """`max_attempts` per `window_s` (any outcome: a rate limit), and after `free_failures`
    consecutive failures a lock of base * 2^(extra failures), capped: exponential backoff.
    Failures are forgotten `forget_s` after the last one."""

    max_attempts: int
    free_failures: int
    window_s: int = 60
    base_lock_s: float = 2.0
    max_lock_s: float = 900.0
    forget_s: float = 3600.0

    def lock_seconds(self, failures: int) -> float:
        if failures < self.free_failures:
            return 0.0
        return min(self.max_lock_s, self.base_lock_s * 2 ** (failures - self.free_failures))

    def attempt(self, s: ThrottleState, now: datetime) -> tuple[ThrottleState, int]:
        """Count an attempt; returns the new state and the seconds to wait (0 = go ahead)."""
        if s.locked_until is not None and s.locked_until > now:
            return s, _ceil((s.locked_until - now).total_seconds())
        start, attempts = s.window_start, s.attempts
        if now - start >= timedelta(seconds=self.window_s):
            start, attempts = now, 0
        attempts += 1
        s = ThrottleState(s.key, start, attempts, s.failures, s.last_failure, s.locked_until)
        if attempts > self.max_attempts:
            return s, _ceil((start + timedelta(seconds=self.window_s) - now).total_seconds())
        return s, 0

    def failure(self, s: ThrottleState, now: datetime) -> ThrottleState:
        failures = s.failures
        if s.last_failure is not None and now - s.last_failure > timedelta(seconds=self.forget_s):
            failures = 0
        failures += 1
        lock = self.lock_seconds(failures)
        until = now + timedelta(seconds=lock) if lock else s.locked_until
        return ThrottleState(s.key, s.window_start, s.attempts, failures, now, until)

    def success(self, s: ThrottleState) -> ThrottleState:
        return ThrottleState(s.key, s.window_start, s.attempts, 0, None, None)


def _ceil(x: float) -> int:
    return max(1, int(-(-x // 1)))


def account_key(email: str) -> str:
    # Hashed: the throttle table must not become a list of every email anyone typed.
    return "acct:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:40]


def address_key(address: str) -> str:
    return "ip:" + address
