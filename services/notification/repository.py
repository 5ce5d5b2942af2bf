"""PostgreSQL notification log: one row per event id (unique), mapped to domain.LogEntry.

The claim is one transaction: insert the row, or lock the existing one and apply the domain's
decide_claim rule, so two workers can never both own an event.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notification.domain import Claim, Kind, LogEntry, LogStatus, decide_claim

# A unit-of-work factory: `write()` opens a primary transaction (commit on clean exit),
# `read()` a connection that may be the replica.
ConnectionFactory = Callable[[], AbstractAsyncContextManager[AsyncConnection]]

SCHEMA = (
    # Serialise concurrent starts: CREATE ... IF NOT EXISTS is not race-free in PostgreSQL.
    "SELECT pg_advisory_xact_lock(54054)",
    """
    CREATE TABLE IF NOT EXISTS notification_log (
        id          uuid PRIMARY KEY,
        event_id    text NOT NULL UNIQUE,
        kind        text NOT NULL,
        user_id     text NOT NULL,
        order_id    text NOT NULL DEFAULT '',
        status      text NOT NULL,
        recipient   text NOT NULL DEFAULT '',
        subject     text NOT NULL DEFAULT '',
        attempts    integer NOT NULL DEFAULT 1,
        error       text NOT NULL DEFAULT '',
        claimed_at  timestamptz NOT NULL,
        sent_at     timestamptz,
        created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS notification_log_by_user
        ON notification_log (user_id, created_at DESC, id DESC)
    """,
)

_COLUMNS = (
    "id, event_id, kind, user_id, order_id, status, recipient, subject, attempts, "
    "claimed_at, created_at"
)


def _entry(row: Any) -> LogEntry:
    return LogEntry(
        id=str(row.id),
        event_id=row.event_id,
        kind=Kind(row.kind),
        user_id=row.user_id,
        order_id=row.order_id,
        status=LogStatus(row.status),
        recipient=row.recipient,
        subject=row.subject,
        attempts=row.attempts,
        claimed_at=row.claimed_at,
        created_at=row.created_at,
    )


class PgNotificationLog:
    def __init__(self, write: ConnectionFactory, read: ConnectionFactory | None = None) -> None:
        self._write = write
        self._read = read or write

    async def create_schema(self) -> None:
        async with self._write() as conn:
            for stmt in SCHEMA:
                await conn.execute(text(stmt))

    async def claim(
        self,
        event_id: str,
        kind: Kind,
        user_id: str,
        order_id: str,
        now: datetime,
        stale_after: timedelta,
    ) -> Claim:
        async with self._write() as conn:
            inserted = await conn.execute(
                text(
                    "INSERT INTO notification_log"
                    " (id, event_id, kind, user_id, order_id, status, claimed_at)"
                    " VALUES (:id, :event_id, :kind, :user_id, :order_id, :status, :now)"
                    " ON CONFLICT (event_id) DO NOTHING RETURNING id"
                ),
                {
                    "id": uuid.uuid4(),
                    "event_id": event_id,
                    "kind": kind.value,
                    "user_id": user_id,
                    "order_id": order_id,
                    "status": LogStatus.SENDING.value,
                    "now": now,
                },
            )
            if inserted.first() is not None:
                return Claim.CLAIMED
            row = (
                await conn.execute(
                    text(
                        f"SELECT {_COLUMNS} FROM notification_log"
                        " WHERE event_id = :event_id FOR UPDATE"
                    ),
                    {"event_id": event_id},
                )
            ).one()
            decision = decide_claim(_entry(row), now, stale_after)
            if decision is Claim.CLAIMED:
                await conn.execute(
                    text(
                        "UPDATE notification_log SET status = :status, claimed_at = :now,"
                        " attempts = attempts + 1, error = '' WHERE event_id = :event_id"
                    ),
                    {"status": LogStatus.SENDING.value, "now": now, "event_id": event_id},
                )
            return decision

    async def _set(self, event_id: str, assignments: str, **params: Any) -> None:
        async with self._write() as conn:
            await conn.execute(
                text(f"UPDATE notification_log SET {assignments} WHERE event_id = :event_id"),
                {"event_id": event_id, **params},
            )

    async def mark_sent(self, event_id: str, now: datetime, recipient: str, subject: str) -> None:
        await self._set(
            event_id,
            "status = :status, sent_at = :now, recipient = :recipient, subject = :subject",
            status=LogStatus.SENT.value, now=now, recipient=recipient, subject=subject,
        )  # fmt: skip

    async def release(self, event_id: str, error: str) -> None:
        await self._set(
            event_id, "status = :status, error = :error", status=LogStatus.RETRYING.value,
            error=error[:500],
        )  # fmt: skip

    async def mark_failed(
        self, event_id: str, error: str, recipient: str = "", subject: str = ""
    ) -> None:
        await self._set(
            event_id,
            "status = :status, error = :error, recipient = :recipient, subject = :subject",
            status=LogStatus.FAILED.value, error=error[:500], recipient=recipient,
            subject=subject,
        )  # fmt: skip

    async def list_for_user(
        self, user_id: str, limit: int, before: tuple[datetime, str] | None
    ) -> list[LogEntry]:
        where = "user_id = :user_id"
        params: dict[str, Any] = {"user_id": user_id, "limit": limit}
        if before is not None:
            where += " AND (created_at, id) < (:before_at, :before_id)"
            params |= {"before_at": before[0], "before_id": uuid.UUID(before[1])}
        async with self._read() as conn:
            rows = await conn.execute(
                text(
                    f"SELECT {_COLUMNS} FROM notification_log WHERE {where}"
                    " ORDER BY created_at DESC, id DESC LIMIT :limit"
                ),
                params,
            )
            return [_entry(r) for r in rows]

    async def get(self, event_id: str) -> LogEntry | None:
        async with self._write() as conn:
            row = (
                await conn.execute(
                    text(f"SELECT {_COLUMNS} FROM notification_log WHERE event_id = :e"),
                    {"e": event_id},
                )
            ).first()
            return _entry(row) if row is not None else None
