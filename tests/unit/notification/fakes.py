"""In-memory fakes of the notification ports (no I/O)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

from services.notification.domain import (
    Claim,
    Email,
    Kind,
    LogEntry,
    LogStatus,
    OrderSummary,
    Recipient,
    UnknownRecipientError,
    decide_claim,
)


class FakeLog:
    def __init__(self) -> None:
        self.rows: dict[str, LogEntry] = {}
        self.clock = datetime(2025, 1, 1)

    async def claim(self, event_id: str, kind: Kind, user_id: str, order_id: str,
                    now: datetime, stale_after: timedelta) -> Claim:  # fmt: skip
        entry = self.rows.get(event_id)
        decision = decide_claim(entry, now, stale_after)
        if decision is Claim.CLAIMED:
            self.clock += timedelta(seconds=1)
            self.rows[event_id] = LogEntry(
                id=entry.id if entry else str(uuid.uuid4()),
                event_id=event_id, status=LogStatus.SENDING, claimed_at=now,
                attempts=(entry.attempts + 1) if entry else 1, user_id=user_id, kind=kind,
                order_id=order_id, created_at=entry.created_at if entry else self.clock,
            )  # fmt: skip
        return decision

    def _set(self, event_id: str, **kw: object) -> None:
        self.rows[event_id] = replace(self.rows[event_id], **kw)  # type: ignore[arg-type]

    async def mark_sent(self, event_id: str, now: datetime, recipient: str, subject: str) -> None:
        self._set(event_id, status=LogStatus.SENT, recipient=recipient, subject=subject)

    async def release(self, event_id: str, error: str) -> None:
        self._set(event_id, status=LogStatus.RETRYING)

    async def mark_failed(self, event_id: str, error: str, recipient: str = "",
                          subject: str = "") -> None:  # fmt: skip
        self._set(event_id, status=LogStatus.FAILED)

    async def list_for_user(self, user_id: str, limit: int,
                            before: tuple[datetime, str] | None) -> list[LogEntry]:  # fmt: skip
        rows = sorted(
            (r for r in self.rows.values() if r.user_id == user_id),
            key=lambda r: (r.created_at, r.id), reverse=True,
        )  # fmt: skip
        if before is not None:
            rows = [r for r in rows if (r.created_at, r.id) < before]
        return rows[:limit]


class FakeUsers:
    def __init__(self, users: dict[str, Recipient]) -> None:
        self.users = users
        self.calls = 0

    async def get_user(self, user_id: str) -> Recipient:
        self.calls += 1
        if user_id not in self.users:
            raise UnknownRecipientError(user_id)
        return self.users[user_id]


class FakeOrders:
    def __init__(self, orders: dict[str, OrderSummary]) -> None:
        self.orders = orders

    async def get_order(self, order_id: str) -> OrderSummary:
        return self.orders[order_id]


class FakeMailer:
    def __init__(self) -> None:
        self.sent: list[Email] = []
        self.fail_with: Exception | None = None

    async def send(self, email: Email) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(email)
