"""Fakes of the auth ports: in-memory store, users and a fixed clock."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from services.auth.domain import Identity, RefreshRecord, ThrottleState


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeUsers:
    def __init__(self) -> None:
        self.accounts: dict[str, tuple[str, Identity]] = {}
        self.calls = 0

    def add(self, email: str, password: str, user_id: str, roles: tuple[str, ...] = ("customer",)):
        self.accounts[email] = (password, Identity(user_id, roles))

    async def check_credentials(self, email: str, password: str) -> Identity | None:
        self.calls += 1
        found = self.accounts.get(email)
        return found[1] if found and found[0] == password else None


class FakeTx:
    def __init__(self, store: FakeStore) -> None:
        self.s = store

    async def refresh_token(self, token_hash: bytes) -> RefreshRecord | None:
        rec = self.s.tokens.get(token_hash)
        if rec is None:
            return None
        fam = self.s.families[rec.family_id]
        return dataclasses.replace(
            rec, user_id=fam["user_id"], roles=fam["roles"], family_revoked_at=fam["revoked_at"]
        )

    async def add_family(self, family_id, user_id, roles, now) -> None:
        self.s.families[family_id] = {"user_id": user_id, "roles": roles, "revoked_at": None}

    async def add_refresh_token(self, rec: RefreshRecord, now) -> None:
        self.s.tokens[rec.token_hash] = rec

    async def spend(self, token_hash: bytes, now) -> None:
        self.s.tokens[token_hash] = dataclasses.replace(self.s.tokens[token_hash], spent_at=now)

    async def revoke_family(self, family_id: str, now) -> None:
        if self.s.families[family_id]["revoked_at"] is None:
            self.s.families[family_id]["revoked_at"] = now

    async def throttle_state(self, key: str, now) -> ThrottleState:
        return self.s.throttle.setdefault(key, ThrottleState(key, now))

    async def save_throttle(self, state: ThrottleState) -> None:
        self.s.throttle[state.key] = state


class FakeStore:
    """Commits on clean exit only, like the real unit of work."""

    def __init__(self) -> None:
        self.tokens: dict[bytes, RefreshRecord] = {}
        self.families: dict[str, dict] = {}
        self.throttle: dict[str, ThrottleState] = {}
        self.commits = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeTx]:
        snapshot = (
            dict(self.tokens),
            {k: dict(v) for k, v in self.families.items()},
            dict(self.throttle),
        )
        try:
            yield FakeTx(self)
        except BaseException:
            self.tokens, self.families, self.throttle = snapshot
            raise
        self.commits += 1
