"""Auth use cases: login, refresh (rotation + reuse detection), logout, JWKS.

Decisions made inside a transaction that must survive a refusal (a counted attempt, a family
revoked on reuse) are committed first; the refusal is raised after the commit. Imports only
the stdlib, the domain and the ports.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.auth.domain import (
    Identity,
    InvalidCredentialsError,
    LoginThrottledError,
    RefreshOutcome,
    RefreshRecord,
    RefreshRejectedError,
    ThrottlePolicy,
    TokenPair,
    account_key,
    address_key,
    judge_refresh,
    token_hash,
)
from services.auth.ports import Signer, Store, Users


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TokenSettings:
    issuer: str
    audience: str
    access_ttl_s: int = 900
    refresh_ttl_s: int = 14 * 86400
    refresh_reuse_grace_s: float = 5.0


@dataclass
class AuthService:
    users: Users
    store: Store
    signer: Signer
    tokens: TokenSettings
    account_policy: ThrottlePolicy
    address_policy: ThrottlePolicy
    clock: Callable[[], datetime] = utcnow

    async def login(self, email: str, password: str, client_address: str) -> TokenPair:
        now = self.clock()
        keys = [(account_key(email), self.account_policy)]
        if client_address:
            keys.append((address_key(client_address), self.address_policy))
        wait = 0
        async with self.store.transaction() as tx:
            for key, policy in keys:
                state, key_wait = policy.attempt(await tx.throttle_state(key, now), now)
                await tx.save_throttle(state)
                wait = max(wait, key_wait)
        if wait:
            # A locked account is not even checked: a lock must stop guessing, not slow it.
            raise LoginThrottledError(wait)
        identity = await self.users.check_credentials(email, password)
        now = self.clock()
        async with self.store.transaction() as tx:
            for key, policy in keys:
                state = await tx.throttle_state(key, now)
                if identity is None:
                    state = policy.failure(state, now)
                elif key.startswith("acct:"):
                    # Only the account forgets its failures: an attacker logging into their
                    # own account must not reset the counter of the address they guess from.
                    state = policy.success(state)
                await tx.save_throttle(state)
            if identity is None:
                pair = None
            else:
                family = uuid.uuid4().hex
                await tx.add_family(family, identity.user_id, identity.roles, now)
                pair = await self._issue(tx, family, identity, now)
        if pair is None:
            raise InvalidCredentialsError()
        return pair

    async def refresh(self, refresh_token: str) -> TokenPair:
        now = self.clock()
        async with self.store.transaction() as tx:
            rec = await tx.refresh_token(token_hash(refresh_token))
            grace = timedelta(seconds=self.tokens.refresh_reuse_grace_s)
            outcome = judge_refresh(rec, now, grace)
            pair = None
            if rec is not None and outcome is RefreshOutcome.REUSE:
                await tx.revoke_family(rec.family_id, now)
            elif rec is not None and outcome is RefreshOutcome.ROTATE:
                await tx.spend(rec.token_hash, now)
                pair = await self._issue(tx, rec.family_id, Identity(rec.user_id, rec.roles), now)
            elif rec is not None and outcome is RefreshOutcome.REISSUE:
                pair = await self._issue(tx, rec.family_id, Identity(rec.user_id, rec.roles), now)
        if pair is None:
            raise RefreshRejectedError()
        return pair

    async def logout(self, refresh_token: str) -> None:
        """Revoke the token's family; unknown or already revoked tokens are fine (idempotent)."""
        now = self.clock()
        async with self.store.transaction() as tx:
            rec = await tx.refresh_token(token_hash(refresh_token))
            if rec is not None and rec.family_revoked_at is None:
                await tx.revoke_family(rec.family_id, now)

    def jwks(self) -> list[dict[str, str]]:
        return self.signer.jwks()

    async def _issue(self, tx: Any, family: str, who: Identity, now: datetime) -> TokenPair:
        refresh = secrets.token_urlsafe(32)
        refresh_exp = now + timedelta(seconds=self.tokens.refresh_ttl_s)
        await tx.add_refresh_token(
            RefreshRecord(token_hash(refresh), family, who.user_id, who.roles, refresh_exp), now
        )
        iat = int(now.timestamp())
        exp = iat + self.tokens.access_ttl_s
        access = self.signer.sign(
            {
                "iss": self.tokens.issuer,
                "aud": self.tokens.audience,
                "sub": who.user_id,
                "roles": list(who.roles),
                "iat": iat,
                "exp": exp,
                "jti": uuid.uuid4().hex,
            }
        )
        return TokenPair(
            access, datetime.fromtimestamp(exp, UTC), refresh, refresh_exp, who.user_id
        )
