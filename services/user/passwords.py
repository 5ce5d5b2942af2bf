"""argon2id password hashing (argon2-cffi), run in a worker thread so a login does not
stall the event loop for the ~tens of milliseconds a hash costs."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher as Argon2
from argon2.exceptions import InvalidHashError, VerificationError


class Argon2Hasher:
    def __init__(self, time_cost: int = 2, memory_cost: int = 19456, parallelism: int = 1) -> None:
        # OWASP's argon2id baseline: m=19 MiB, t=2, p=1.
        self._argon = Argon2(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
        self._dummy = self._argon.hash(secrets.token_urlsafe(16))

    @property
    def dummy_hash(self) -> str:
        return self._dummy

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._argon.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        def check() -> bool:
            try:
                return self._argon.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._argon.check_needs_rehash(password_hash)
