"""What the auth use cases need from the outside world. Imports only the stdlib and domain."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from services.auth.domain import Identity, RefreshRecord, ThrottleState


class Users(Protocol):
    async def check_credentials(self, email: str, password: str) -> Identity | None:
        """The user behind email+password, or None (same for unknown email, wrong password)."""


class Signer(Protocol):
    def sign(self, claims: Mapping[str, Any]) -> str:
        """A JWS compact token with the current signing key (its kid in the header)."""

    def jwks(self) -> list[dict[str, str]]:
        """Public keys that may have signed a live token (JWK dicts)."""


class Tx(Protocol):
    """One primary transaction."""

    async def refresh_token(self, token_hash: bytes) -> RefreshRecord | None:
        """The token row with its family, locked until commit."""

    async def add_family(
        self, family_id: str, user_id: str, roles: tuple[str, ...], now: datetime
    ) -> None: ...

    async def add_refresh_token(self, rec: RefreshRecord, now: datetime) -> None: ...

    async def spend(self, token_hash: bytes, now: datetime) -> None: ...

    async def revoke_family(self, family_id: str, now: datetime) -> None: ...

    async def throttle_state(self, key: str, now: datetime) -> ThrottleState:
        """The counter row (created empty if new), locked until commit."""

    async def save_throttle(self, state: ThrottleState) -> None: ...


class Store(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Tx]: ...
