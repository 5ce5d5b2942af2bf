"""The notification use case: one event in, at most one email out (in effect).

Imports the stdlib, domain, ports and the runtime's (stdlib-only) error types. The consumer
(consumer.py) decides what a raised error means for the Kafka record (retry topic or
dead-letter topic); this module only raises.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from services.notification.domain import (
    Claim,
    ClaimHeldError,
    Email,
    Event,
    Kind,
    LogEntry,
    NotificationError,
    OrderPlaced,
    OrderStatusChanged,
    OrderSummary,
    PermanentError,
    Recipient,
    UserRegistered,
    check_address,
    kind_for,
    message_id_for,
    order_id_of,
    subject_for,
)
from services.notification.ports import Mailer, NotificationLog, OrderBook, Renderer, UserDirectory
from services.runtime.errors import InvalidArgument


class Outcome(StrEnum):
    SENT = "sent"
    DUPLICATE = "duplicate"  # already sent for this event id: nothing to do
    IGNORED = "ignored"  # the event calls for no email


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Notifier:
    """Many events are handled at once (the consumer's whole poll); `max_in_flight` bounds
    the emails between 'handed to SMTP' and 'logged as sent'. Those are the ones a crash
    can make us send twice (decide_claim), so the bound is also the most a crash costs."""

    log: NotificationLog
    users: UserDirectory
    orders: OrderBook
    mailer: Mailer
    renderer: Renderer
    stale_after: timedelta = timedelta(minutes=2)
    message_domain: str = "notification.shopmesh.local"
    clock: Callable[[], datetime] = _utcnow
    max_in_flight: int = 32
    _sending: asyncio.Semaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._sending = asyncio.Semaphore(self.max_in_flight)

    async def handle(self, event: Event) -> Outcome:
        kind = kind_for(event)
        if kind is None:
            return Outcome.IGNORED
        claim = await self.log.claim(
            event.event_id,
            kind,
            event.user_id,
            order_id_of(event),
            self.clock(),
            self.stale_after,
        )
        if claim is Claim.ALREADY_SENT:
            return Outcome.DUPLICATE
        if claim is Claim.HELD:
            raise ClaimHeldError(f"event {event.event_id} is being sent by another worker")
        email: Email | None = None
        handed_over = False
        try:
            email = await self._compose(event, kind)
            async with self._sending:
                handed_over = True
                await self.mailer.send(email)
                await self.log.mark_sent(event.event_id, self.clock(), email.to, email.subject)
        except asyncio.CancelledError:
            # Stopping mid-poll. An email not handed to SMTP yet is released, so the next
            # worker sends it at once instead of waiting for the claim to go stale; one
            # handed over may be out, and only the stale claim may resend it.
            if not handed_over:
                await asyncio.shield(self.log.release(event.event_id, "cancelled: stopping"))
            raise
        except PermanentError as exc:
            await self.log.mark_failed(
                event.event_id,
                f"{exc.reason}: {exc}",
                email.to if email else "",
                email.subject if email else "",
            )
            raise
        except NotificationError as exc:
            await self.log.release(event.event_id, f"{exc.reason}: {exc}")
            raise
        return Outcome.SENT

    async def _compose(self, event: Event, kind: Kind) -> Email:
        recipient = await self._recipient(event)
        check_address(recipient.email)
        order = await self._order(event)
        status = event.status if isinstance(event, OrderStatusChanged) else None
        subject = subject_for(kind, order, status)
        context = {
            "recipient": recipient,
            "order": order,
            "status": status.value.lower() if status else "",
            "reason": getattr(event, "reason", None) or "",
            "shipping_city": getattr(event, "shipping_city", ""),
            "subject": subject,
        }
        text, html = self.renderer.render(kind, context)
        return Email(
            message_id=message_id_for(event.event_id, self.message_domain),
            to=recipient.email,
            to_name=recipient.name,
            subject=subject,
            text=text,
            html=html,
        )

    async def _recipient(self, event: Event) -> Recipient:
        if isinstance(event, UserRegistered):
            return Recipient(event.user_id, event.email, event.display_name)
        return await self.users.get_user(event.user_id)

    async def _order(self, event: Event) -> OrderSummary | None:
        if isinstance(event, OrderPlaced):
            return OrderSummary(event.order_id, event.total, event.lines, event.shipping)
        if isinstance(event, OrderStatusChanged):
            # The status event carries no total; the order service has it.
            return await self.orders.get_order(event.order_id)
        return None


# ---------------------------------------------------------------- reading the log

DEFAULT_PAGE_SIZE = 20


def encode_cursor(entry: LogEntry) -> str:
    assert entry.created_at is not None
    raw = f"{entry.created_at.isoformat()}|{entry.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        at, _, entry_id = raw.partition("|")
        return datetime.fromisoformat(at), str(uuid.UUID(entry_id))
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("page_token", "not a token from a previous response") from None


async def list_notifications(
    log: NotificationLog, user_id: str, page_size: int, page_token: str
) -> tuple[list[LogEntry], str]:
    """One page of a user's notifications, newest first, and the next page's token."""
    size = page_size or DEFAULT_PAGE_SIZE
    before = decode_cursor(page_token) if page_token else None
    rows = await log.list_for_user(user_id, size + 1, before)
    page = rows[:size]
    return page, encode_cursor(page[-1]) if len(rows) > size else ""
