"""Ports: what the notification use case needs from the outside world.

Stdlib and domain only. Adapters: repository.py (PostgreSQL log), mailer.py (SMTP),
clients.py (user and order services over gRPC), templates.py (Jinja2).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from services.notification.domain import (
    Claim,
    Email,
    Kind,
    LogEntry,
    OrderSummary,
    Recipient,
)


class NotificationLog(Protocol):
    """The log keyed by event id (unique) that makes sending exactly-once in effect."""

    async def claim(
        self,
        event_id: str,
        kind: Kind,
        user_id: str,
        order_id: str,
        now: datetime,
        stale_after: timedelta,
    ) -> Claim:
        """Atomically apply domain.decide_claim and, when CLAIMED, record the claim."""
        ...

    async def mark_sent(
        self, event_id: str, now: datetime, recipient: str, subject: str
    ) -> None: ...

    async def release(self, event_id: str, error: str) -> None:
        """A transient failure: the next attempt may claim at once."""
        ...

    async def mark_failed(
        self, event_id: str, error: str, recipient: str = "", subject: str = ""
    ) -> None: ...

    async def list_for_user(
        self, user_id: str, limit: int, before: tuple[datetime, str] | None
    ) -> list[LogEntry]:
        """Newest first, strictly older than the (created_at, id) cursor `before`."""
        ...


class UserDirectory(Protocol):
    async def get_user(self, user_id: str) -> Recipient:
        """Raises UnknownRecipientError or DependencyUnavailableError."""
        ...


class OrderBook(Protocol):
    async def get_order(self, order_id: str) -> OrderSummary:
        """Raises UnknownOrderError or DependencyUnavailableError."""
        ...


class Mailer(Protocol):
    async def send(self, email: Email) -> None:
        """Raises MailerUnavailableError (retry) or InvalidAddressError (recipient refused)."""
        ...


class Renderer(Protocol):
    def render(self, kind: Kind, context: dict[str, Any]) -> tuple[str, str]:
        """(plain text, HTML) bodies for one kind of email."""
        ...
