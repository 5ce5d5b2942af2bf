"""End to end through the stack as deployed: an order placed, paid and cancelled through the
real order service reaches the stack's notification service over the outbox relay and
shop.orders.v1, and the shared SMTP sink gets one email per step, each with the order
number and the total the order service reports (GetOrder)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from grpclib.client import Channel

from shop.common.v1 import common_pb2
from shop.order.v1 import order_pb2
from shop.order.v1.order_grpc import OrderServiceStub
from shop.topology import SERVICES
from stack.callers import as_admin
from tests.integration.notification.conftest import Mail, eventually, place_real_order, sink_mail

pytestmark = pytest.mark.stack


def _money(m: common_pb2.Money) -> str:
    amount = (Decimal(m.units) + Decimal(m.nanos) / Decimal(10**9)).quantize(Decimal("0.01"))
    return f"{m.currency_code} {amount}"


def _mail_of(since_ns: int, order_id: str) -> list[Mail]:
    return [m for m in sink_mail(since_ns) if order_id in m.subject]


async def test_paid_and_cancelled_order_each_email_once_with_number_and_total(stack, since_ns):
    stack.require("order", "notification", "smtp-sink")
    order, address = await place_real_order(stack, quantity=3)  # 3 x USD 12.25
    channel = as_admin(
        Channel("127.0.0.1", SERVICES["order"].port)
    )  # UpdateOrderStatus is an admin's
    try:
        orders = OrderServiceStub(channel)
        await orders.UpdateOrderStatus(
            order_pb2.UpdateOrderStatusRequest(id=order.id, status=order_pb2.ORDER_STATUS_PAID)
        )
        cancel = order_pb2.CancelOrderRequest(id=order.id, reason="cheaper elsewhere")
        await orders.CancelOrder(cancel)
        stored = (await orders.GetOrder(order_pb2.GetOrderRequest(id=order.id))).order
    finally:
        channel.close()
    total = _money(stored.total)
    assert total == "USD 36.75"  # the test's own arithmetic agrees with the order service

    expected = {
        f"Order {order.id} confirmed - total {total}",
        f"Order {order.id} paid - total {total}",
        f"Order {order.id} cancelled - total {total}",
    }
    await eventually(lambda: {m.subject for m in _mail_of(since_ns, order.id)} >= expected, 90)
    await asyncio.sleep(1.5)  # a duplicate (relay republish, redelivery) would land now
    mails = _mail_of(since_ns, order.id)
    assert sorted(m.subject for m in mails) == sorted(expected)  # one each, nothing else
    for m in mails:
        assert address in m.to
        assert order.id in m.text and total in m.text
        assert order.id in m.html and total in m.html
    [cancelled] = [m for m in mails if "cancelled" in m.subject]
    assert "cheaper elsewhere" in cancelled.text
    [paid] = [m for m in mails if " paid " in m.subject]
    assert "paid" in paid.text
