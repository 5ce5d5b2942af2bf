"""PostgreSQL adapter of the user ports: SQL (Core, text) with explicit row <-> domain
mapping, and the outbox rows written in the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime import context
from services.runtime.db import UnitOfWork
from services.user.domain import (
    AddAddress,
    Address,
    EmailTakenError,
    Role,
    SavedAddress,
    UpdateProfile,
    User,
    UserRegistered,
)
from shop.topology import USERS_TOPIC

USER_COLS = "id, email, display_name, phone, roles, created_at"
ADDRESS_COLS = (
    "id, recipient_name, line1, line2, city, region, postal_code, country_code, is_default"
)


def _user(row: Any) -> User:
    return User(
        id=row.id,
        email=row.email,
        display_name=row.display_name,
        phone=row.phone,
        roles=tuple(Role(r) for r in row.roles),
        created_at=row.created_at,
    )


def _address(row: Any) -> SavedAddress:
    return SavedAddress(
        id=row.id,
        address=Address(
            recipient_name=row.recipient_name,
            line1=row.line1,
            line2=row.line2,
            city=row.city,
            region=row.region,
            postal_code=row.postal_code,
            country_code=row.country_code,
        ),
        is_default=row.is_default,
    )


class SqlUserRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, user: User, password_hash: str) -> None:
        try:
            async with self.conn.begin_nested():
                await self.conn.execute(
                    text(
                        "INSERT INTO users (id, email, password_hash, display_name, roles, "
                        "created_at) VALUES (:id, :email, :hash, :name, :roles, :created)"
                    ),
                    {
                        "id": user.id,
                        "email": user.email,
                        "hash": password_hash,
                        "name": user.display_name,
                        "roles": [r.value for r in user.roles],
                        "created": user.created_at,
                    },
                )
        except IntegrityError as exc:
            if "users_email_lower_key" in str(exc.orig):
                raise EmailTakenError() from None
            raise

    async def get(self, user_id: str) -> User | None:
        row = (
            await self.conn.execute(
                text(f"SELECT {USER_COLS} FROM users WHERE id = :id"), {"id": user_id}
            )
        ).first()
        return _user(row) if row else None

    async def get_many(self, user_ids: list[str]) -> list[User]:
        rows = await self.conn.execute(
            text(f"SELECT {USER_COLS} FROM users WHERE id = ANY(:ids)"), {"ids": user_ids}
        )
        return [_user(row) for row in rows]

    async def credentials(self, email: str) -> tuple[User, str] | None:
        row = (
            await self.conn.execute(
                text(f"SELECT {USER_COLS}, password_hash FROM users WHERE lower(email) = :e"),
                {"e": email},
            )
        ).first()
        return (_user(row), row.password_hash) if row else None

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await self.conn.execute(
            text("UPDATE users SET password_hash = :h, updated_at = now() WHERE id = :id"),
            {"id": user_id, "h": password_hash},
        )

    async def update_profile(self, cmd: UpdateProfile) -> User | None:
        sets = ["updated_at = now()"]
        params: dict[str, Any] = {"id": cmd.id}
        for col in ("display_name", "phone"):
            value = getattr(cmd, col)
            if value is not None:
                sets.append(f"{col} = :{col}")
                params[col] = value
        row = (
            await self.conn.execute(
                text(f"UPDATE users SET {', '.join(sets)} WHERE id = :id RETURNING {USER_COLS}"),
                params,
            )
        ).first()
        return _user(row) if row else None

    async def add_address(self, address_id: str, cmd: AddAddress) -> SavedAddress:
        # Lock the user row: concurrent AddAddress calls of one user then agree on whether
        # this is the first address (which becomes the default).
        await self.conn.execute(
            text("SELECT 1 FROM users WHERE id = :u FOR UPDATE"), {"u": cmd.user_id}
        )
        has_default = (
            await self.conn.execute(
                text("SELECT 1 FROM addresses WHERE user_id = :u AND is_default"),
                {"u": cmd.user_id},
            )
        ).first() is not None
        make_default = cmd.make_default or not has_default
        if make_default and has_default:
            await self.conn.execute(
                text("UPDATE addresses SET is_default = false WHERE user_id = :u AND is_default"),
                {"u": cmd.user_id},
            )
        a = cmd.address
        row = (
            await self.conn.execute(
                text(
                    "INSERT INTO addresses (id, user_id, recipient_name, line1, line2, city, "
                    "region, postal_code, country_code, is_default) VALUES (:id, :u, :rn, :l1, "
                    f":l2, :city, :region, :pc, :cc, :d) RETURNING {ADDRESS_COLS}"
                ),
                {
                    "id": address_id,
                    "u": cmd.user_id,
                    "rn": a.recipient_name,
                    "l1": a.line1,
                    "l2": a.line2,
                    "city": a.city,
                    "region": a.region,
                    "pc": a.postal_code,
                    "cc": a.country_code,
                    "d": make_default,
                },
            )
        ).one()
        return _address(row)

    async def addresses(self, user_id: str) -> list[SavedAddress]:
        rows = await self.conn.execute(
            text(
                f"SELECT {ADDRESS_COLS} FROM addresses WHERE user_id = :u "
                "ORDER BY is_default DESC, created_at, id"
            ),
            {"u": user_id},
        )
        return [_address(r) for r in rows]

    async def remove_address(self, user_id: str, address_id: str) -> bool:
        row = (
            await self.conn.execute(
                text("DELETE FROM addresses WHERE id = :id AND user_id = :u RETURNING is_default"),
                {"id": address_id, "u": user_id},
            )
        ).first()
        if row is None:
            return False
        if row.is_default:  # the oldest remaining address becomes the default
            await self.conn.execute(
                text(
                    "UPDATE addresses SET is_default = true WHERE id = ("
                    "SELECT id FROM addresses WHERE user_id = :u ORDER BY created_at, id LIMIT 1)"
                ),
                {"u": user_id},
            )
        return True

    async def add_event(self, event: UserRegistered) -> None:
        ctx = context.current()
        payload = {
            "event_id": str(event.event_id),
            "occurred_at": event.occurred_at.isoformat(),
            "user_id": event.user_id,
            "email": event.email,
            "display_name": event.display_name,
        }
        await self.conn.execute(
            text(
                "INSERT INTO outbox (event_id, topic, key, record_name, payload, traceparent) "
                "VALUES (:id, :topic, :key, :name, CAST(:payload AS jsonb), :tp)"
            ),
            {
                "id": event.event_id,
                "topic": USERS_TOPIC,
                "key": event.user_id,
                "name": "shop.events.v1.UserRegistered",
                "payload": json.dumps(payload),
                "tp": str(ctx.extra.get("traceparent", "")) if ctx else "",
            },
        )


class SqlUserUnitOfWork:
    """The user ports over the runtime's read/write router (one per request)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqlUserRepository]:
        async with self._uow.write() as conn:
            yield SqlUserRepository(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqlUserRepository]:
        async with self._uow.read() as conn:
            yield SqlUserRepository(conn)
