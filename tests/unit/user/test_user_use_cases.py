"""User use cases with fakes of the ports (no I/O, no real hashing)."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest

from services.user import service
from services.user.domain import (
    AddAddress,
    Address,
    CheckCredentials,
    EmailTakenError,
    RegisterUser,
    SavedAddress,
    UpdateProfile,
    User,
    UserNotFoundError,
    UserRegistered,
    normalize_email,
)


class FakeHasher:
    dummy_hash = "hash:dummy"

    def __init__(self) -> None:
        self.verified: list[str] = []

    async def hash(self, password: str) -> str:
        return f"hash:{password}"

    async def verify(self, password_hash: str, password: str) -> bool:
        self.verified.append(password_hash)
        return password_hash == f"hash:{password}"

    def needs_rehash(self, password_hash: str) -> bool:
        return False


class FakeRepo:
    def __init__(self) -> None:
        self.users: dict[str, tuple[User, str]] = {}
        self.events: list[UserRegistered] = []
        self.addresses_: dict[str, list[SavedAddress]] = {}

    async def add(self, user, password_hash):
        if any(
            normalize_email(u.email) == normalize_email(user.email) for u, _ in self.users.values()
        ):
            raise EmailTakenError()
        self.users[user.id] = (user, password_hash)

    async def get(self, user_id):
        found = self.users.get(user_id)
        return found[0] if found else None

    async def credentials(self, email):
        for user, h in self.users.values():
            if normalize_email(user.email) == email:
                return user, h
        return None

    async def set_password_hash(self, user_id, password_hash):
        user, _ = self.users[user_id]
        self.users[user_id] = (user, password_hash)

    async def update_profile(self, cmd: UpdateProfile):
        found = self.users.get(cmd.id)
        if not found:
            return None
        user, h = found
        changes = {k: v for k, v in vars(cmd).items() if v is not None and k != "id"}
        user = User(**{**vars(user), **changes})
        self.users[cmd.id] = (user, h)
        return user

    async def add_address(self, address_id, cmd: AddAddress):
        saved = SavedAddress(address_id, cmd.address, cmd.make_default)
        self.addresses_.setdefault(cmd.user_id, []).append(saved)
        return saved

    async def addresses(self, user_id):
        return self.addresses_.get(user_id, [])

    async def remove_address(self, user_id, address_id):
        before = len(self.addresses_.get(user_id, []))
        self.addresses_[user_id] = [
            a for a in self.addresses_.get(user_id, []) if a.id != address_id
        ]
        return len(self.addresses_[user_id]) < before

    async def add_event(self, event):
        self.events.append(event)


class FakeUow:
    def __init__(self) -> None:
        self.repo = FakeRepo()
        self.commits = 0

    @asynccontextmanager
    async def write(self):
        yield self.repo
        self.commits += 1

    @asynccontextmanager
    async def read(self):
        yield self.repo


@pytest.fixture
def uow():
    return FakeUow()


async def test_register_saves_user_and_event_in_one_unit_of_work(uow):
    user = await service.register_user(
        RegisterUser("Ada@Example.com", "pw-12345678", "Ada"), uow, FakeHasher()
    )
    assert uow.commits == 1
    assert uow.repo.users[user.id][1] == "hash:pw-12345678"
    (event,) = uow.repo.events
    assert (event.user_id, event.email) == (user.id, "Ada@Example.com")


async def test_register_twice_case_insensitive_is_refused(uow):
    await service.register_user(RegisterUser("a@b.co", "pw-12345678", "A"), uow, FakeHasher())
    with pytest.raises(EmailTakenError):
        await service.register_user(RegisterUser("A@B.CO", "pw-12345678", "A"), uow, FakeHasher())


async def test_credentials_unknown_email_still_verifies_a_hash(uow):
    hasher = FakeHasher()
    assert await service.check_credentials(CheckCredentials("x@y.z", "pw"), uow, hasher) is None
    assert hasher.verified == ["hash:dummy"]  # same work as a wrong password


async def test_credentials_match_case_insensitively(uow):
    hasher = FakeHasher()
    user = await service.register_user(RegisterUser("a@b.co", "pw-12345678", "A"), uow, hasher)
    assert (
        await service.check_credentials(CheckCredentials("A@b.co", "pw-12345678"), uow, hasher)
        == user
    )
    assert await service.check_credentials(CheckCredentials("a@b.co", "nope"), uow, hasher) is None


async def test_register_command_repr_hides_password():
    assert "secret-pw" not in repr(RegisterUser("a@b.co", "secret-pw", "A"))
    assert "secret-pw" not in repr(CheckCredentials("a@b.co", "secret-pw"))


async def test_unknown_user_errors(uow):
    with pytest.raises(UserNotFoundError):
        await service.get_user("u-x", uow)
    with pytest.raises(UserNotFoundError):
        await service.update_profile(UpdateProfile("u-x", display_name="n"), uow)
    addr = Address("A", "1 St", "Berlin", "10115", "DE")
    with pytest.raises(UserNotFoundError):
        await service.add_address(AddAddress("u-x", addr), uow)
    with pytest.raises(UserNotFoundError):
        await service.list_addresses("u-x", uow)
