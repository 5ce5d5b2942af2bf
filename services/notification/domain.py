"""Notification domain: which email answers which event, and the dedupe rules of the log.

Stdlib only: no Kafka, SMTP, SQL, gRPC or generated code here (adapters map to these types).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

# ---------------------------------------------------------------- events we consume


@dataclass(frozen=True)
class Money:
    currency_code: str
    units: int
    nanos: int = 0

    @property
    def amount(self) -> Decimal:
        return (Decimal(self.units) + Decimal(self.nanos) / Decimal(10**9)).quantize(
            Decimal("0.01")
        )

    def __str__(self) -> str:
        # Integer arithmetic, the same digits as str(self.amount) (cents rounded half to
        # even): an email shows ten amounts, and Decimal's quantize made them a third of
        # the rendering's CPU. Negative amounts (never in an email) keep the Decimal path.
        total = self.units * 10**9 + self.nanos
        if total < 0:
            return f"{self.currency_code} {self.amount}"
        cents, rest = divmod(total, 10**7)
        if rest > 5 * 10**6 or (rest == 5 * 10**6 and cents % 2):
            cents += 1
        return f"{self.currency_code} {cents // 100}.{cents % 100:02d}"


def sum_money(amounts: list[Money]) -> Money:
    """The sum of amounts of one currency (the first's)."""
    nanos = sum(m.units * 10**9 + m.nanos for m in amounts)
    units = abs(nanos) // 10**9 * (1 if nanos >= 0 else -1)
    return Money(amounts[0].currency_code, units, nanos - units * 10**9)


@dataclass(frozen=True)
class OrderLine:
    product_name: str
    quantity: int
    unit_price: Money

    @property
    def line_total(self) -> Money:
        nanos = (self.unit_price.units * 10**9 + self.unit_price.nanos) * self.quantity
        return Money(self.unit_price.currency_code, nanos // 10**9, nanos % 10**9)


@dataclass(frozen=True)
class OrderPlaced:
    event_id: str
    occurred_at: datetime
    order_id: str
    user_id: str
    lines: tuple[OrderLine, ...]
    total: Money  # the lines' total, in the currency the shopper is charged in
    shipping_city: str = ""
    shipping: Money | None = None  # when the event says (orders with a charge)


class OrderStatus(StrEnum):
    UNKNOWN = "UNKNOWN"
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class OrderStatusChanged:
    event_id: str
    occurred_at: datetime
    order_id: str
    user_id: str
    previous_status: OrderStatus
    status: OrderStatus
    reason: str | None = None


@dataclass(frozen=True)
class UserRegistered:
    event_id: str
    occurred_at: datetime
    user_id: str
    email: str
    display_name: str


Event = OrderPlaced | OrderStatusChanged | UserRegistered


# ---------------------------------------------------------------- what to send


class Kind(StrEnum):
    """Mirrors shop.notification.v1.NotificationKind; also the template name."""

    WELCOME = "welcome"
    ORDER_CONFIRMED = "order_confirmed"
    ORDER_STATUS = "order_status"
    ORDER_CANCELLED = "order_cancelled"


# Statuses a customer is told about; CONFIRMED is covered by the OrderPlaced email and
# PENDING never reaches the customer.
_STATUS_EMAILS = {
    OrderStatus.PAID: Kind.ORDER_STATUS,
    OrderStatus.SHIPPED: Kind.ORDER_STATUS,
    OrderStatus.DELIVERED: Kind.ORDER_STATUS,
    OrderStatus.CANCELLED: Kind.ORDER_CANCELLED,
}


def kind_for(event: Event) -> Kind | None:
    """The email an event calls for, or None when it calls for none."""
    match event:
        case OrderPlaced():
            return Kind.ORDER_CONFIRMED
        case OrderStatusChanged(status=status):
            return _STATUS_EMAILS.get(status)
        case UserRegistered():
            return Kind.WELCOME
    return None


def order_id_of(event: Event) -> str:
    return getattr(event, "order_id", "")


@dataclass(frozen=True)
class Recipient:
    user_id: str
    email: str
    name: str


@dataclass(frozen=True)
class OrderSummary:
    """What an order email shows; from the event, or from the order service."""

    order_id: str
    total: Money  # the lines' total
    lines: tuple[OrderLine, ...] = ()
    shipping: Money | None = None

    @property
    def charged(self) -> Money | None:
        """Lines plus shipping: what the shopper pays (None when shipping is not known)."""
        return None if self.shipping is None else sum_money([self.total, self.shipping])

    @property
    def number(self) -> str:
        """The order number customers see and quote to support: the order id."""
        return self.order_id


_STATUS_WORDS = {
    OrderStatus.PAID: "paid",
    OrderStatus.SHIPPED: "shipped",
    OrderStatus.DELIVERED: "delivered",
    OrderStatus.CANCELLED: "cancelled",
}


def subject_for(kind: Kind, order: OrderSummary | None, status: OrderStatus | None) -> str:
    """Subject lines carry the order number and total so the inbox alone answers 'which?'."""
    if kind is Kind.WELCOME or order is None:
        return "Welcome to Shopmesh"
    if kind is Kind.ORDER_CONFIRMED:
        return f"Order {order.number} confirmed - total {order.total}"
    if kind is Kind.ORDER_CANCELLED:
        return f"Order {order.number} cancelled - total {order.total}"
    word = _STATUS_WORDS.get(status or OrderStatus.UNKNOWN, "updated")
    return f"Order {order.number} {word} - total {order.total}"


@dataclass(frozen=True)
class Email:
    """A rendered email, ready for the mailer."""

    message_id: str
    to: str
    to_name: str
    subject: str
    text: str
    html: str


def message_id_for(event_id: str, domain: str) -> str:
    """Deterministic Message-ID: a resend after a crash between SMTP and the log carries the
    same id as the first copy, so mail clients and support can recognise the duplicate."""
    return f"<{event_id}@{domain}>"


# RFC 5322 is far looser; this is the subset we deliver to. No whitespace or control
# characters anywhere (header injection), exactly one @, a dotted domain.
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def check_address(address: str) -> str:
    if len(address) > 254 or not _ADDRESS.match(address):
        raise InvalidAddressError(f"undeliverable address {address!r}")
    return address


# ---------------------------------------------------------------- errors


class NotificationError(Exception):
    """Base of the errors the consumer routes; `reason` is a stable label for headers."""

    reason = "error"


class PermanentError(NotificationError):
    """Retrying cannot help: dead-letter at once."""

    reason = "permanent"


class TransientError(NotificationError):
    """May succeed later: send to the next retry stage."""

    reason = "transient"


class UndecodableEventError(PermanentError):
    reason = "undeserializable"


class UnknownSchemaError(PermanentError):
    reason = "unknown-schema"


class InvalidAddressError(PermanentError):
    reason = "invalid-address"


class MailRejectedError(PermanentError):
    reason = "smtp-rejected"


class UnknownRecipientError(PermanentError):
    reason = "unknown-user"


class UnknownOrderError(PermanentError):
    reason = "unknown-order"


class MailerUnavailableError(TransientError):
    reason = "smtp-unavailable"


class DependencyUnavailableError(TransientError):
    reason = "dependency-unavailable"


class ClaimHeldError(TransientError):
    """Another worker holds a fresh claim on this event (rebalance, replay race)."""

    reason = "claim-held"


# ---------------------------------------------------------------- dedupe rules


class LogStatus(StrEnum):
    SENDING = "sending"  # claimed; maybe handed to SMTP, outcome unknown until marked sent
    SENT = "sent"
    RETRYING = "retrying"  # a transient failure released the claim
    FAILED = "failed"  # dead-lettered; a replay may claim it again


class Claim(StrEnum):
    CLAIMED = "claimed"
    ALREADY_SENT = "already-sent"
    HELD = "held"


@dataclass(frozen=True)
class LogEntry:
    event_id: str
    status: LogStatus
    claimed_at: datetime
    attempts: int = 1
    user_id: str = ""
    kind: Kind | None = None
    order_id: str = ""
    recipient: str = ""
    subject: str = ""
    created_at: datetime | None = None
    id: str = field(default="")


def decide_claim(entry: LogEntry | None, now: datetime, stale_after: timedelta) -> Claim:
    """May this worker send the email for an event whose log entry is `entry`?

    - no entry, a released (retrying) or a dead-lettered (failed) entry: yes.
    - sent: never again (a redelivery or replay).
    - a fresh sending claim: someone is on it; try later.
    - a stale sending claim (its worker died): yes. The email may have been delivered just
      before the crash (between SMTP's 250 and the log write): we choose at-least-once here
      (a lost order email costs more than a duplicate), and the deterministic Message-ID
      makes such a duplicate recognisable. The window is one SMTP exchange plus one
      commit; a claim row per event costs one write, and we keep it to two per email.
    """
    if entry is None or entry.status in (LogStatus.RETRYING, LogStatus.FAILED):
        return Claim.CLAIMED
    if entry.status is LogStatus.SENT:
        return Claim.ALREADY_SENT
    if now - entry.claimed_at >= stale_after:
        return Claim.CLAIMED
    return Claim.HELD
