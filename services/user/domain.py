"""User accounts domain: users, saved addresses, the UserRegistered event and errors.

Stdlib only (plus the runtime's plain error base classes). Passwords never live here in
clear beyond the command that carries them to the hasher.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from services.runtime.errors import AlreadyExists, NotFound


class Role(enum.Enum):
    CUSTOMER = "customer"
    ADMIN = "admin"


@dataclass(frozen=True)
class User:
    id: str
    email: str
    display_name: str
    phone: str
    roles: tuple[Role, ...]
    created_at: datetime


@dataclass(frozen=True)
class Address:
    recipient_name: str
    line1: str
    city: str
    postal_code: str
    country_code: str
    line2: str = ""
    region: str = ""


@dataclass(frozen=True)
class SavedAddress:
    id: str
    address: Address
    is_default: bool


@dataclass(frozen=True)
class UserRegistered:
    """Past-tense event, saved to the outbox in the registration transaction."""

    user_id: str
    email: str
    display_name: str
    occurred_at: datetime
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)


def new_user_id() -> str:
    return f"u-{uuid.uuid4().hex}"


def new_address_id() -> str:
    return f"a-{uuid.uuid4().hex[:16]}"


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively (the unique index is on lower(email))."""
    return email.strip().lower()


# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class RegisterUser:
    email: str
    password: str = field(repr=False)  # never in logs or reprs
    display_name: str = ""
    roles: tuple[Role, ...] = (Role.CUSTOMER,)


@dataclass(frozen=True)
class UpdateProfile:
    id: str
    display_name: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class AddAddress:
    user_id: str
    address: Address
    make_default: bool = False


@dataclass(frozen=True)
class CheckCredentials:
    email: str
    password: str = field(repr=False)


# ---------------------------------------------------------------- errors


class UserNotFoundError(NotFound):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id!r} not found")


class EmailTakenError(AlreadyExists):
    def __init__(self) -> None:
        # The email is not echoed: error messages end up in logs.
        super().__init__("email is already registered")
