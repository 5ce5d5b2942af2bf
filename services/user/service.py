"""User use cases. Stdlib + domain + ports only."""

from __future__ import annotations

from datetime import UTC, datetime

from services.user.domain import (
    AddAddress,
    CheckCredentials,
    RegisterUser,
    SavedAddress,
    UpdateProfile,
    User,
    UserNotFoundError,
    UserRegistered,
    new_address_id,
    new_user_id,
    normalize_email,
)
from services.user.ports import PasswordHasher, UserUnitOfWork


async def register_user(cmd: RegisterUser, uow: UserUnitOfWork, hasher: PasswordHasher) -> User:
    """Create the account and its UserRegistered event in one transaction (outbox)."""
    password_hash = await hasher.hash(cmd.password)  # slow on purpose: outside the transaction
    now = datetime.now(UTC)
    user = User(new_user_id(), cmd.email.strip(), cmd.display_name, "", cmd.roles, now)
    async with uow.write() as repo:
        await repo.add(user, password_hash)
        await repo.add_event(UserRegistered(user.id, user.email, user.display_name, now))
    return user


async def get_user(user_id: str, uow: UserUnitOfWork) -> User:
    async with uow.read() as repo:
        user = await repo.get(user_id)
    if user is None:
        raise UserNotFoundError(user_id)
    return user


async def get_users(user_ids: list[str], uow: UserUnitOfWork) -> tuple[list[User], list[str]]:
    """(the users found, the ids that name no user); a repeated id is answered once."""
    wanted = list(dict.fromkeys(user_ids))
    async with uow.read() as repo:
        users = await repo.get_many(wanted)
    found = {u.id for u in users}
    return users, [i for i in wanted if i not in found]


async def update_profile(cmd: UpdateProfile, uow: UserUnitOfWork) -> User:
    async with uow.write() as repo:
        user = await repo.update_profile(cmd)
    if user is None:
        raise UserNotFoundError(cmd.id)
    return user


async def add_address(cmd: AddAddress, uow: UserUnitOfWork) -> SavedAddress:
    async with uow.write() as repo:
        if await repo.get(cmd.user_id) is None:
            raise UserNotFoundError(cmd.user_id)
        return await repo.add_address(new_address_id(), cmd)


async def list_addresses(user_id: str, uow: UserUnitOfWork) -> list[SavedAddress]:
    async with uow.read() as repo:
        if await repo.get(user_id) is None:
            raise UserNotFoundError(user_id)
        return await repo.addresses(user_id)


async def remove_address(user_id: str, address_id: str, uow: UserUnitOfWork) -> bool:
    async with uow.write() as repo:
        return await repo.remove_address(user_id, address_id)


async def check_credentials(
    cmd: CheckCredentials, uow: UserUnitOfWork, hasher: PasswordHasher
) -> User | None:
    """The user when email and password match, else None: same answer and (close to) the
    same time for an unknown email and a wrong password."""
    # Credentials come from the primary: a password just changed must work at once.
    async with uow.write() as repo:
        found = await repo.credentials(normalize_email(cmd.email))
    if found is None:
        await hasher.verify(hasher.dummy_hash, cmd.password)
        return None
    user, password_hash = found
    if not await hasher.verify(password_hash, cmd.password):
        return None
    if hasher.needs_rehash(password_hash):  # parameters were raised since it was hashed
        new_hash = await hasher.hash(cmd.password)
        async with uow.write() as repo:
            await repo.set_password_hash(user.id, new_hash)
    return user
