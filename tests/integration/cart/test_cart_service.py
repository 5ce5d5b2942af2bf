"""The cart service on real servers: a shopper's cart read and changed over gRPC with their
own token, the schema's limits, ownership, sign-in merge, and the OrderPlaced consumer
(applied once, redelivery harmless, poison to the DLQ)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer
from grpclib import GRPCError, Status

from services.cart import service
from services.cart.domain import CartFullError, CartItem
from services.cart.repository import (
    CartQueues,
    SqlCartSwapper,
    SqlCartUnitOfWork,
    prune_events,
)
from services.runtime.kafka import AvroSerde, EventProducer, KafkaConfig
from shop.cart.v1 import cart_pb2 as pb
from shop.events import v1 as events
from shop.topology import REGISTRY_URL
from stack.callers import admin_bearer
from tests.integration.cart.cart_helpers import Shopper, add, call, eventually, new_shopper


def set_q(uid: str, product_id: str, quantity: int) -> pb.SetItemQuantityRequest:
    return pb.SetItemQuantityRequest(user_id=uid, product_id=product_id, quantity=quantity)


def items(cart: pb.Cart) -> list[tuple[str, int]]:
    return [(i.product_id, i.quantity) for i in cart.items]


async def test_a_shopper_adds_changes_and_removes_and_reads_their_own_writes(carts, shopper):
    uid = shopper.user_id
    reply, lsn = await add(carts, shopper, "p-0001", 2)
    assert items(reply.cart) == [("p-0001", 2)]
    reply, lsn = await add(carts, shopper, "p-0002", 1, lsn)
    reply, lsn = await add(carts, shopper, "p-0001", 3, lsn)
    assert items(reply.cart) == [("p-0001", 5), ("p-0002", 1)]
    assert lsn, "a write returns its commit LSN"
    # The read after the writes sees them (the replica waits for the LSN, or the primary).
    got, _ = await call(carts.GetCart, pb.GetCartRequest(user_id=uid), shopper, lsn)
    assert items(got.cart) == [("p-0001", 5), ("p-0002", 1)]
    assert got.cart.HasField("update_time")
    reply, lsn = await call(carts.SetItemQuantity, set_q(uid, "p-0001", 7), shopper, lsn)
    assert items(reply.cart) == [("p-0001", 7), ("p-0002", 1)]
    reply, lsn = await call(
        carts.RemoveItem, pb.RemoveItemRequest(user_id=uid, product_id="p-0002"), shopper, lsn
    )
    assert items(reply.cart) == [("p-0001", 7)]
    reply, lsn = await call(carts.SetItemQuantity, set_q(uid, "p-0001", 0), shopper, lsn)
    assert items(reply.cart) == []
    got, _ = await call(carts.GetCart, pb.GetCartRequest(user_id=uid), shopper, lsn)
    assert items(got.cart) == []


async def test_a_new_shoppers_cart_is_empty(carts, shopper):
    got, _ = await call(carts.GetCart, pb.GetCartRequest(user_id=shopper.user_id), shopper)
    assert items(got.cart) == [] and got.cart.user_id == shopper.user_id


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (lambda u: pb.AddItemRequest(user_id=u, product_id="p-1", quantity=101), "quantity"),
        (lambda u: pb.AddItemRequest(user_id=u, product_id="p-1", quantity=0), "quantity"),
        (lambda u: pb.AddItemRequest(user_id=u, product_id="p 1;", quantity=1), "product_id"),
        (lambda u: pb.SetItemQuantityRequest(user_id=u, product_id="p-1", quantity=-1), "quantity"),
        (
            lambda u: pb.MergeCartRequest(
                user_id=u, items=[pb.CartItem(product_id=f"p-{i}", quantity=1) for i in range(51)]
            ),
            "items",
        ),
        (
            lambda u: pb.MergeCartRequest(
                user_id=u, items=[pb.CartItem(product_id="p-1", quantity=500)]
            ),
            "items[0].quantity",
        ),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(carts, shopper, request_, field):
    req = request_(shopper.user_id)
    method = getattr(carts, type(req).__name__.removesuffix("Request"))
    with pytest.raises(GRPCError) as err:
        await call(method, req, shopper)
    assert err.value.status is Status.INVALID_ARGUMENT
    assert field in err.value.message, err.value.message
    got, _ = await call(carts.GetCart, pb.GetCartRequest(user_id=shopper.user_id), shopper)
    assert items(got.cart) == [], "nothing was written"


async def test_limits_a_single_request_cannot_see_are_the_domains(carts, shopper):
    uid = shopper.user_id
    _, lsn = await add(carts, shopper, "p-1", 60)
    with pytest.raises(GRPCError) as err:
        await add(carts, shopper, "p-1", 41, lsn)
    assert err.value.status is Status.INVALID_ARGUMENT and "quantity" in err.value.message
    merge = pb.MergeCartRequest(
        user_id=uid, items=[pb.CartItem(product_id=f"m-{i}", quantity=1) for i in range(49)]
    )
    reply, lsn = await call(carts.MergeCart, merge, shopper, lsn)
    assert len(reply.cart.items) == 50
    with pytest.raises(GRPCError) as err:
        await add(carts, shopper, "p-new", 1, lsn)
    assert err.value.status is Status.FAILED_PRECONDITION


async def test_concurrent_adds_never_pass_the_line_limit(carts, shopper):
    uid = shopper.user_id

    async def add_one(i: int) -> Status | None:
        try:
            await add(carts, shopper, f"c-{i}", 1)
        except GRPCError as exc:
            return exc.status
        return None

    outcomes = await asyncio.gather(*(add_one(i) for i in range(60)))
    assert outcomes.count(None) == 50
    assert outcomes.count(Status.FAILED_PRECONDITION) == 10
    got, _ = await call(carts.GetCart, pb.GetCartRequest(user_id=uid), shopper)
    assert len(got.cart.items) == 50


async def test_another_shoppers_cart_is_refused_an_admin_may_only_read_it(carts, shopper):
    other = await new_shopper()
    uid = shopper.user_id
    _, lsn = await add(carts, shopper, "p-1", 1)
    for req in (
        pb.GetCartRequest(user_id=uid),
        pb.AddItemRequest(user_id=uid, product_id="p-2", quantity=1),
        pb.RemoveItemRequest(user_id=uid, product_id="p-1"),
        pb.EmptyCartRequest(user_id=uid),
        pb.MergeCartRequest(user_id=uid, items=[pb.CartItem(product_id="p-3", quantity=1)]),
    ):
        method = getattr(carts, type(req).__name__.removesuffix("Request"))
        with pytest.raises(GRPCError) as err:
            await call(method, req, other, lsn)
        assert err.value.status is Status.PERMISSION_DENIED, type(req).__name__
    with pytest.raises(GRPCError) as err:
        await carts.GetCart(pb.GetCartRequest(user_id=uid))  # no token
    assert err.value.status is Status.UNAUTHENTICATED
    admin = Shopper("", (await admin_bearer())["authorization"].removeprefix("Bearer "))
    got, _ = await call(carts.GetCart, pb.GetCartRequest(user_id=uid), admin, lsn)
    assert items(got.cart) == [("p-1", 1)]
    with pytest.raises(GRPCError) as err:
        req = pb.AddItemRequest(user_id=uid, product_id="p-2", quantity=1)
        await call(carts.AddItem, req, admin)
    assert err.value.status is Status.PERMISSION_DENIED
    got, _ = await call(carts.GetCart, pb.GetCartRequest(user_id=uid), shopper, lsn)
    assert items(got.cart) == [("p-1", 1)], "the refused calls changed nothing"


async def test_merge_on_sign_in_keeps_the_larger_quantity_and_twice_is_once(carts, shopper):
    uid = shopper.user_id
    _, lsn = await add(carts, shopper, "p-1", 2)
    browser = [pb.CartItem(product_id="p-1", quantity=5), pb.CartItem(product_id="p-2", quantity=1)]
    merge = pb.MergeCartRequest(user_id=uid, items=browser)
    reply, lsn = await call(carts.MergeCart, merge, shopper, lsn)
    assert items(reply.cart) == [("p-1", 5), ("p-2", 1)] and not reply.dropped_product_ids
    reply, lsn = await call(carts.MergeCart, merge, shopper, lsn)
    assert items(reply.cart) == [("p-1", 5), ("p-2", 1)]


# ------------------------------------------------------------------ OrderPlaced


@pytest.fixture
async def producer(infra):
    cfg = KafkaConfig(bootstrap_servers=infra.kafka_bootstrap, registry_url=REGISTRY_URL)
    async with EventProducer(cfg, AvroSerde(REGISTRY_URL, auto_register=True)) as p:
        yield p


def order_placed(user_id: str, lines: list[tuple[str, int]]) -> events.OrderPlaced:
    price = events.Money(currency_code="USD", units=2, nanos=0)
    return events.OrderPlaced(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        order_id=uuid.uuid4().hex,
        user_id=user_id,
        lines=[events.OrderLine(p, "Thing", q, price) for p, q in lines],
        total=price,
        shipping_city="Lyon",
    )


async def test_order_placed_takes_the_order_out_once_and_a_redelivery_is_harmless(
    carts, shopper, producer, orders_topic, cart_app
):
    uid = shopper.user_id
    _, lsn = await add(carts, shopper, "p-1", 2)
    _, lsn = await add(carts, shopper, "p-2", 3, lsn)
    rec = order_placed(uid, [("p-1", 2), ("p-2", 1)])
    await producer.publish(orders_topic, rec, key=rec.order_id, event_id=str(rec.event_id))

    async def cart_is(expected: list[tuple[str, int]]) -> bool:
        got, _ = await call(carts.GetCart, pb.GetCartRequest(user_id=uid), shopper, lsn)
        return items(got.cart) == expected

    await eventually(lambda: cart_is([("p-2", 2)]))
    # The shopper adds p-1 again; the same event delivered again must not take it out.
    _, lsn = await add(carts, shopper, "p-1", 2)
    events_ = cart_app.cart.consumer.metrics.events
    duplicates = events_.labels("duplicate")._value.get()
    await producer.publish(orders_topic, rec, key=rec.order_id, event_id=str(rec.event_id))
    await eventually(
        lambda: asyncio.sleep(0, events_.labels("duplicate")._value.get() > duplicates)
    )
    assert await cart_is([("p-2", 2), ("p-1", 2)])


async def test_a_poison_record_goes_to_the_dlq_and_the_partition_moves_on(
    carts, shopper, producer, orders_topic, infra
):
    uid = shopper.user_id
    _, lsn = await add(carts, shopper, "p-1", 1)
    key = uuid.uuid4().hex.encode()
    ack = await producer.send_raw(orders_topic, b"\x00not avro", key=key)
    await ack
    rec = order_placed(uid, [("p-1", 1)])
    # Same key, same partition: the order's event waits behind the poison record.
    await producer.publish(orders_topic, rec, key=key.decode(), event_id=str(rec.event_id))

    async def emptied() -> bool:
        got, _ = await call(carts.GetCart, pb.GetCartRequest(user_id=uid), shopper, lsn)
        return items(got.cart) == []

    await eventually(emptied)
    consumer = AIOKafkaConsumer(
        f"{orders_topic}.dlq", bootstrap_servers=infra.kafka_bootstrap, group_id=None,
        auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    try:
        found = []
        async with asyncio.timeout(20):
            while not any(r.key == key for r in found):
                for recs in (await consumer.getmany(timeout_ms=300)).values():
                    found.extend(recs)
    finally:
        await consumer.stop()
    dead = next(r for r in found if r.key == key)
    headers = dict(dead.headers)
    assert dead.value == b"\x00not avro"
    assert headers["x-dlq-group"].startswith(b"ct-") and headers["x-dlq-reason"] == b"poison"


async def test_old_applied_event_ids_are_pruned_and_recent_ones_kept(cart_app):
    db = cart_app.cart.db
    old, recent = f"old-{uuid.uuid4()}", f"recent-{uuid.uuid4()}"
    async with db.primary.begin() as conn:
        await conn.exec_driver_sql(
            "INSERT INTO cart_events (event_id, handled_at) VALUES "
            "($1, now() - interval '15 days'), ($2, now() - interval '13 days')",
            (old, recent),
        )
    assert await prune_events(db.unit_of_work(), 14) >= 1
    async with db.primary.connect() as conn:
        rows = await conn.exec_driver_sql(
            "SELECT event_id FROM cart_events WHERE event_id IN ($1, $2)", (old, recent)
        )
        assert [r[0] for r in rows] == [recent]


async def test_changes_racing_from_two_processes_lose_nothing_and_keep_the_limits(cart_app):
    """Two processes' queues (a second worker): their changes of one cart race in the
    store's compare-and-set, and the lock after repeated losses, on the real primary."""
    db = cart_app.cart.db
    queues = [CartQueues(), CartQueues()]

    def uow(i: int) -> SqlCartUnitOfWork:
        return SqlCartUnitOfWork(db.unit_of_work(), queues[i % 2])

    user = f"race-{uuid.uuid4().hex[:8]}"
    await asyncio.gather(*(service.add_item(user, "same", 1, uow(i)) for i in range(30)))
    await asyncio.gather(*(service.add_item(user, f"line-{i}", 1, uow(i)) for i in range(40)))
    outcomes = await asyncio.gather(
        *(service.add_item(user, f"more-{i}", 1, uow(i)) for i in range(20)),
        return_exceptions=True,
    )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 11 and all(isinstance(e, CartFullError) for e in errors)  # 50 lines
    async with uow(0).swap(user) as stored:  # the primary's: no replica lag in the way
        cart = await stored.current(user)
    assert len(cart.items) == 50 and cart.items[0] == CartItem("same", 30)
    assert sum(q.carts() for q in queues) == 0  # no queue entry outlives its changes


async def test_one_processs_concurrent_changes_of_a_cart_queue_and_lose_no_race(
    cart_app, monkeypatch
):
    db, queues, lost = cart_app.cart.db, CartQueues(), []
    swap = SqlCartSwapper.swap

    async def counted(self, before, after):
        stored = await swap(self, before, after)
        if stored is None:
            lost.append(after)
        return stored

    monkeypatch.setattr(SqlCartSwapper, "swap", counted)
    user = f"queued-{uuid.uuid4().hex[:8]}"
    await asyncio.gather(
        *(
            service.add_item(user, f"p-{i % 3}", 1, SqlCartUnitOfWork(db.unit_of_work(), queues))
            for i in range(24)
        )
    )
    async with SqlCartUnitOfWork(db.unit_of_work()).swap(user) as stored:
        cart = await stored.current(user)
    assert sorted((i.product_id, i.quantity) for i in cart.items) == [
        ("p-0", 8), ("p-1", 8), ("p-2", 8)
    ]  # fmt: skip
    assert lost == []
