"""What the user use cases need: storage and a password hasher. Stdlib + domain only."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from services.user.domain import (
    AddAddress,
    SavedAddress,
    UpdateProfile,
    User,
    UserRegistered,
)


class UserRepository(Protocol):
    async def add(self, user: User, password_hash: str) -> None:
        """Raises EmailTakenError when the email (case-insensitive) exists."""
        ...

    async def get(self, user_id: str) -> User | None: ...

    async def get_many(self, user_ids: list[str]) -> list[User]:
        """The users of those ids that exist, in no particular order."""
        ...

    async def credentials(self, email: str) -> tuple[User, str] | None:
        """The user and password hash for a normalized email."""
        ...

    async def set_password_hash(self, user_id: str, password_hash: str) -> None: ...

    async def update_profile(self, cmd: UpdateProfile) -> User | None: ...

    async def add_address(self, address_id: str, cmd: AddAddress) -> SavedAddress: ...

    async def addresses(self, user_id: str) -> list[SavedAddress]: ...

    async def remove_address(self, user_id: str, address_id: str) -> bool: ...

    async def add_event(self, event: UserRegistered) -> None:
        """Outbox row in the same transaction as the change that raised it."""
        ...


class UserUnitOfWork(Protocol):
    def write(self) -> AbstractAsyncContextManager[UserRepository]: ...

    def read(self) -> AbstractAsyncContextManager[UserRepository]: ...


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool: ...

    def needs_rehash(self, password_hash: str) -> bool: ...

    @property
    def dummy_hash(self) -> str:
        """A hash of a random password, verified against for unknown emails so that an
        unknown email costs the same time as a wrong password."""
        ...
