"""The notification use case: one event in, at most one email out (in effect).

Stdlib, domain and ports only. The consumer (consumer.py) decides what a raised error means
for the Kafka record (retry topic or dead-letter topic); this module only raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from services.notification.domain import (
    Claim,
    ClaimHeldError,
    Email,
    Event,
    Kind,
    NotificationError,
    OrderPlaced,
    OrderStatus,
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


class Outcome(StrEnum):
    SENT = "sent"
    DUPLICATE = "duplicate"  # already sent for this event id: nothing to do
    IGNORED = "ignored"  # the event calls for no email


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Notifier:
    log: NotificationLog
    users: UserDirectory
    orders: OrderBook
    mailer: Mailer
    renderer: Renderer
    stale_after: timedelta = timedelta(minutes=2)
    message_domain: str = "notification.shopmesh.local"
    clock: Callable[[], datetime] = _utcnow

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
        try:
            email = await self._compose(event, kind)
            await self.log.mark_transmitting(event.event_id, email.to, email.subject)
            await self.mailer.send(email)
        except PermanentError as exc:
            await self.log.mark_failed(event.event_id, f"{exc.reason}: {exc}")
            raise
        except NotificationError as exc:
            await self.log.release(event.event_id, f"{exc.reason}: {exc}")
            raise
        await self.log.mark_sent(event.event_id, self.clock())
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
            return OrderSummary(event.order_id, event.total, event.lines)
        if isinstance(event, OrderStatusChanged):
            # The status event carries no total; the order service has it.
            return await self.orders.get_order(event.order_id)
        return None


__all__ = ["Notifier", "OrderStatus", "Outcome"]
