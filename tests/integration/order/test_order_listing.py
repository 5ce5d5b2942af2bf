"""ListOrders cursor paging through the running order service on real FerretDB: every page
is fetched with the previous page's token, and the pages together are the user's visible
orders newest first, each exactly once, including orders created at the same instant (the
cursor breaks ties by order id, services/order/repository.py list_by_user)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from grpclib.client import Channel

from services.order.domain import Address, LineItem, Money, Order, OrderLine, PlaceOrder
from services.order.repository import MongoOrders, to_doc
from shop.order.v1 import order_pb2 as pb
from shop.order.v1.order_grpc import OrderServiceStub
from shop.product.v1.product_grpc import ProductServiceStub
from shop.topology import SERVICES
from shop.user.v1.user_grpc import UserServiceStub
from stack.callers import as_platform
from tests.integration.order.order_helpers import SHIPPING, buyer_and_product

pytestmark = pytest.mark.stack

ADDR = Address("Ada", "1 Main St", "Lyon", "69001", "FR")
ORDER_DB = "order"  # the stack's order service database (services/order/config.py default)


@pytest.fixture(scope="module")
def up(stack):
    return stack.require("order", "auth")  # auth: the demo admin's token


@pytest.fixture
async def channels(up):
    # As a trusted service: ListOrders of any user is allowed to the platform's tooling.
    chans = [
        as_platform(Channel("127.0.0.1", p))
        for p in (SERVICES["order"].port, SERVICES["product"].port, SERVICES["user"].port)
    ]
    yield chans
    for c in chans:
        c.close()


@pytest.fixture
async def store(up):
    """The order service's own database, for writing orders with chosen creation times;
    every document a test writes there is removed afterwards (by its user ids)."""
    repo = MongoOrders(up.mongo_url(), ORDER_DB)
    await repo.open()
    users: list[str] = []
    yield repo, users
    # One equality filter per user: FerretDB v1 pushes equality down to PostgreSQL, not
    # $in, which scans the whole orders table (past the 10 s socket timeout on a stack
    # that has placed tens of thousands of orders).
    for user in users:
        await repo.orders.delete_many({"user_id": user})
    await repo.close()


def confirmed_at(user_id: str, created: dt.datetime) -> Order:
    """A CONFIRMED order created at `created`, without pending events: the service's relay
    has nothing to publish for it and its sweeper only looks at PENDING orders."""
    cmd = PlaceOrder(user_id, f"key-{uuid.uuid4().hex}", (LineItem("p-1", 1),), ADDR)
    order = Order.start(uuid.uuid4().hex, cmd, cmd.lines, created)
    order.confirm([OrderLine("p-1", "Mug", 1, Money("USD", 3, 0))], created, None)
    order.events = []
    return order


async def page_all(stub: OrderServiceStub, user_id: str, size: int) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    for _ in range(100):  # bounded: a cursor that never ends fails instead of looping
        reply = await stub.ListOrders(
            pb.ListOrdersRequest(user_id=user_id, page_size=size, page_token=token)
        )
        pages.append([o.id for o in reply.orders])
        token = reply.next_page_token
        if not token:
            return pages
    pytest.fail("ListOrders kept returning a next_page_token")


async def test_list_orders_pages_newest_first_across_same_instant_ties(channels, store):
    stub = OrderServiceStub(channels[0])
    repo, users = store
    user, other = f"u-page-{uuid.uuid4().hex[:10]}", f"u-page-{uuid.uuid4().hex[:10]}"
    users += [user, other]
    # Millisecond instants (BSON dates keep ms): runs of 5 and 4 orders share one instant
    # and straddle page boundaries at page size 3; the rest are one per instant.
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    instants = [t0] * 5 + [t0 + dt.timedelta(seconds=1)] * 4
    instants += [t0 + dt.timedelta(seconds=s) for s in (-5, 2, 3, 7)]
    mine = [confirmed_at(user, t) for t in instants]
    # A tombstone at the tied instant: never listed (updated now, so the sweeper keeps it).
    cmd = PlaceOrder(user, f"key-{uuid.uuid4().hex}", (LineItem("p-1", 1),), ADDR)
    failed = Order.start(uuid.uuid4().hex, cmd, cmd.lines, t0)
    failed.fail(dt.datetime.now(dt.UTC))
    failed.release_pending = False
    theirs = [confirmed_at(other, t) for t in (t0, t0, t0 + dt.timedelta(seconds=1))]
    await repo.orders.insert_many([to_doc(o) for o in (*mine, failed, *theirs)])

    pages = await page_all(stub, user, 3)

    expected = [o.id for o in sorted(mine, key=lambda o: (o.created_at, o.id), reverse=True)]
    assert [len(p) for p in pages] == [3, 3, 3, 3, 1]
    listed = [i for p in pages for i in p]
    assert len(listed) == len(set(listed)), "an order was listed twice"
    assert listed == expected  # no gap, no stranger, newest first, ties by id
    theirs_listed = [i for p in await page_all(stub, other, 2) for i in p]
    assert theirs_listed == [
        o.id for o in sorted(theirs, key=lambda o: (o.created_at, o.id), reverse=True)
    ]


async def test_list_orders_pages_through_placed_orders(channels):
    """The same through PlaceOrder alone: orders the service created itself."""
    orders, products, users = (
        OrderServiceStub(channels[0]),
        ProductServiceStub(channels[1]),
        UserServiceStub(channels[2]),
    )
    tag = uuid.uuid4().hex[:8]
    user, product = await buyer_and_product(users, products, "page", 100)
    placed = []
    for i in range(7):
        reply = await orders.PlaceOrder(
            pb.PlaceOrderRequest(
                idempotency_key=f"k-{tag}-{i}",
                user_id=user.id,
                lines=[pb.LineItem(product_id=product.id, quantity=1)],
                shipping_address=SHIPPING,
            )
        )
        placed.append(reply.order.id)

    pages = await page_all(orders, user.id, 2)

    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [i for p in pages for i in p] == placed[::-1]
