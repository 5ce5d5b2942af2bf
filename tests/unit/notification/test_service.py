"""The notification use case against fakes of its ports: one email per event, dedupe,
error split, rendering with the real templates, paging."""

import asyncio
from datetime import UTC, datetime

import pytest

from services.notification.domain import (
    ClaimHeldError,
    InvalidAddressError,
    LogStatus,
    MailerUnavailableError,
    Money,
    OrderLine,
    OrderPlaced,
    OrderStatus,
    OrderStatusChanged,
    OrderSummary,
    Recipient,
    UnknownRecipientError,
    UserRegistered,
)
from services.notification.service import Notifier, Outcome, list_notifications
from services.notification.templates import JinjaRenderer
from services.runtime.errors import InvalidArgument
from tests.unit.notification.fakes import FakeLog, FakeMailer, FakeOrders, FakeUsers

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)
ALICE = Recipient("u1", "alice@shop.test", "Alice <b>&</b>")


def _notifier(users=None, orders=None) -> tuple[Notifier, FakeLog, FakeMailer]:
    log, mailer = FakeLog(), FakeMailer()
    n = Notifier(
        log=log,
        users=FakeUsers(users if users is not None else {"u1": ALICE}),
        orders=FakeOrders(orders or {}),
        mailer=mailer,
        renderer=JinjaRenderer(),
        message_domain="n.test",
        clock=lambda: NOW,
    )
    return n, log, mailer


def _placed(event_id: str = "e-1") -> OrderPlaced:
    lines = (OrderLine("Mug", 2, Money("USD", 7, 250_000_000)),)
    return OrderPlaced(event_id, NOW, "ord-7", "u1", lines, Money("USD", 14, 500_000_000), "Oslo")


async def test_order_placed_sends_one_confirmation_with_number_and_total():
    n, log, mailer = _notifier()
    assert await n.handle(_placed()) is Outcome.SENT
    [email] = mailer.sent
    assert email.to == "alice@shop.test"
    assert email.message_id == "<e-1@n.test>"
    assert "ord-7" in email.subject and "USD 14.50" in email.subject
    assert "ord-7" in email.text and "USD 14.50" in email.text and "2 x Mug" in email.text
    assert "ord-7" in email.html and "USD 14.50" in email.html
    assert "Alice &lt;b&gt;&amp;&lt;/b&gt;" in email.html  # user input escaped in HTML
    assert log.rows["e-1"].status is LogStatus.SENT


async def test_same_event_twice_sends_once():
    n, _, mailer = _notifier()
    assert await n.handle(_placed()) is Outcome.SENT
    assert await n.handle(_placed()) is Outcome.DUPLICATE
    assert len(mailer.sent) == 1


async def test_status_change_takes_total_from_order_service():
    order = OrderSummary("ord-7", Money("EUR", 30))
    n, _, mailer = _notifier(orders={"ord-7": order})
    ev = OrderStatusChanged("e-2", NOW, "ord-7", "u1", OrderStatus.PAID, OrderStatus.SHIPPED)
    assert await n.handle(ev) is Outcome.SENT
    assert "shipped" in mailer.sent[0].subject and "EUR 30.00" in mailer.sent[0].subject


async def test_cancellation_mentions_reason():
    n, _, mailer = _notifier(orders={"ord-7": OrderSummary("ord-7", Money("EUR", 30))})
    ev = OrderStatusChanged(
        "e-3", NOW, "ord-7", "u1", OrderStatus.PAID, OrderStatus.CANCELLED, "out of stock"
    )
    await n.handle(ev)
    assert "cancelled" in mailer.sent[0].subject
    assert "out of stock" in mailer.sent[0].text


async def test_confirmed_status_change_sends_nothing_and_logs_nothing():
    n, log, mailer = _notifier()
    ev = OrderStatusChanged("e-4", NOW, "o", "u1", OrderStatus.PENDING, OrderStatus.CONFIRMED)
    assert await n.handle(ev) is Outcome.IGNORED
    assert mailer.sent == [] and log.rows == {}


async def test_welcome_uses_event_address_without_user_lookup():
    n, _, mailer = _notifier(users={})
    assert await n.handle(UserRegistered("e-5", NOW, "u9", "bob@shop.test", "Bob")) is Outcome.SENT
    assert mailer.sent[0].to == "bob@shop.test" and "Bob" in mailer.sent[0].text


async def test_smtp_down_releases_claim_so_a_retry_sends():
    n, log, mailer = _notifier()
    mailer.fail_with = MailerUnavailableError("down")
    with pytest.raises(MailerUnavailableError):
        await n.handle(_placed())
    assert log.rows["e-1"].status is LogStatus.RETRYING
    mailer.fail_with = None
    assert await n.handle(_placed()) is Outcome.SENT
    assert len(mailer.sent) == 1


async def test_invalid_address_and_unknown_user_are_permanent_and_logged_failed():
    n, log, mailer = _notifier(users={"u1": Recipient("u1", "not-an-address", "X")})
    with pytest.raises(InvalidAddressError):
        await n.handle(_placed())
    assert log.rows["e-1"].status is LogStatus.FAILED
    n2, _, _ = _notifier(users={})
    with pytest.raises(UnknownRecipientError):
        await n2.handle(_placed("e-2"))
    assert mailer.sent == []


async def test_fresh_claim_of_another_worker_is_transient():
    n, log, mailer = _notifier()
    await log.claim("e-1", None, "u1", "", NOW, n.stale_after)  # type: ignore[arg-type]
    with pytest.raises(ClaimHeldError):
        await n.handle(_placed())
    assert mailer.sent == []


async def test_stale_claim_is_taken_over_with_same_message_id():
    n, log, mailer = _notifier()
    await log.claim("e-1", None, "u1", "", NOW - n.stale_after, n.stale_after)  # type: ignore[arg-type]
    assert await n.handle(_placed()) is Outcome.SENT
    assert mailer.sent[0].message_id == "<e-1@n.test>"


async def test_list_pages_newest_first():
    n, log, _ = _notifier()
    for i in range(5):
        await n.handle(_placed(f"e-{i}"))
    page1, token = await list_notifications(log, "u1", 2, "")
    page2, token2 = await list_notifications(log, "u1", 2, token)
    page3, token3 = await list_notifications(log, "u1", 2, token2)
    ids = [e.event_id for e in page1 + page2 + page3]
    assert ids == ["e-4", "e-3", "e-2", "e-1", "e-0"]
    assert token and token2 and token3 == ""


async def test_list_rejects_forged_token():
    _, log, _ = _notifier()
    with pytest.raises(InvalidArgument) as err:
        await list_notifications(log, "u1", 5, "!!garbage")
    assert err.value.field == "page_token"


async def test_at_most_max_in_flight_emails_between_smtp_and_the_sent_mark():
    """What a crash can resend is what was handed to SMTP and not yet logged as sent: many
    events are handled at once, but no more than max_in_flight are in that window."""
    log, mailer = FakeLog(), FakeMailer()
    users = {f"u{i}": Recipient(f"u{i}", f"u{i}@shop.test", "U") for i in range(40)}
    n = Notifier(log=log, users=FakeUsers(users), orders=FakeOrders({}), mailer=mailer,
                 renderer=JinjaRenderer(), clock=lambda: NOW, max_in_flight=3)  # fmt: skip
    window, widest = 0, 0
    send, mark = mailer.send, log.mark_sent

    async def slow_send(email):
        nonlocal window, widest
        window += 1
        widest = max(widest, window)
        await asyncio.sleep(0.001)
        await send(email)

    async def slow_mark(*args):
        nonlocal window
        await asyncio.sleep(0.001)
        await mark(*args)
        window -= 1

    mailer.send, log.mark_sent = slow_send, slow_mark  # type: ignore[method-assign]
    lines = (OrderLine("Mug", 1, Money("USD", 7)),)
    placed = [
        OrderPlaced(f"e-{i}", NOW, f"o-{i}", f"u{i}", lines, Money("USD", 7)) for i in range(40)
    ]
    outcomes = await asyncio.gather(*(n.handle(ev) for ev in placed))
    assert outcomes == [Outcome.SENT] * 40 and len(mailer.sent) == 40
    assert widest == 3  # used fully, never exceeded


async def test_stopping_before_smtp_releases_the_claim_after_smtp_keeps_it():
    class SlowUsers(FakeUsers):
        async def get_user(self, user_id):
            await asyncio.sleep(10)

    log, mailer = FakeLog(), FakeMailer()
    n = Notifier(log=log, users=SlowUsers({}), orders=FakeOrders({}), mailer=mailer,
                 renderer=JinjaRenderer(), clock=lambda: NOW)  # fmt: skip
    task = asyncio.ensure_future(n.handle(_placed("e-1")))
    await asyncio.sleep(0.01)  # claimed, looking the user up
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log.rows["e-1"].status is LogStatus.RETRYING  # the next worker may send at once

    stuck = asyncio.Event()

    async def hanging_send(email):
        await stuck.wait()

    n2, log2, mailer2 = _notifier()
    mailer2.send = hanging_send  # type: ignore[method-assign]
    task = asyncio.ensure_future(n2.handle(_placed("e-2")))
    await asyncio.sleep(0.01)  # in SMTP: the email may already be out
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log2.rows["e-2"].status is LogStatus.SENDING  # only a stale claim may resend it
