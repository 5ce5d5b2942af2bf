"""Order use cases with fakes of our own ports: the saga, idempotency, compensation,
transitions, paging and the sweeper."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest

from services.order.domain import (
    Address,
    CancelOrder,
    LineItem,
    ListOrders,
    Money,
    OrderPlaced,
    OrderStatus,
    OrderStatusChanged,
    PlaceOrder,
    Trace,
    UpdateOrderStatus,
)
from services.order.errors import (
    CatalogUnavailableError,
    IdempotencyKeyReusedError,
    InvalidTransitionError,
    OrderNotFoundError,
    OutOfStockError,
    PlacementAbandonedError,
    UnknownProductError,
    UserNotFoundError,
)
from services.order.service import OrderService
from services.runtime.errors import InvalidArgument
from tests.unit.order.order_fakes import Clock, FakeCatalog, FakeRepo, FakeUsers

ADDR = Address("Ada", "1 Main St", "Lyon", "69001", "FR")
TRACE = Trace("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")


class Counter:
    def __init__(self) -> None:
        self.placed_n = 0
        self.replayed_n = 0
        self.reasons: list[str] = []

    def placed(self, replayed: bool) -> None:
        self.placed_n += 1
        self.replayed_n += replayed

    def failed(self, reason: str) -> None:
        self.reasons.append(reason)


@pytest.fixture
def world():
    repo = FakeRepo()
    catalog = FakeCatalog(
        {
            "p-mug": ("Mug", Money("USD", 12, 500_000_000), 10),
            "p-tea": ("Tea", Money("USD", 4, 0), 3),
        }
    )
    clock = Clock()
    counter = Counter()
    svc = OrderService(repo, FakeUsers("u-1", "u-2"), catalog, clock=clock, observer=counter)
    return svc, repo, catalog, clock, counter


def cmd(key="key-000001", user="u-1", lines=(("p-mug", 2),), address=ADDR) -> PlaceOrder:
    return PlaceOrder(user, key, tuple(LineItem(p, q) for p, q in lines), address, TRACE)


async def test_place_order_confirms_at_catalog_prices_and_emits_order_placed(world):
    svc, repo, catalog, _, counter = world
    order = await svc.place_order(cmd(lines=(("p-mug", 2), ("p-tea", 1))))
    assert order.status is OrderStatus.CONFIRMED
    assert order.total == Money("USD", 29, 0)  # 2 x 12.50 + 4, from the catalog
    assert catalog.stock("p-mug") == 8 and catalog.stock("p-tea") == 2
    (event,) = repo.published
    assert isinstance(event, OrderPlaced)
    assert event.order_id == order.id and event.total == order.total and event.trace == TRACE
    assert event.shipping_city == "Lyon" and counter.placed_n == 1


async def test_same_key_returns_same_order_and_one_reservation(world):
    svc, repo, catalog, _, counter = world
    a = await svc.place_order(cmd())
    b = await svc.place_order(cmd())
    assert a.id == b.id and len(repo.docs) == 1 and catalog.stock("p-mug") == 8
    assert len(repo.published) == 1 and counter.replayed_n == 1


async def test_twenty_racing_requests_with_one_key_make_one_order(world):
    svc, repo, catalog, _, _ = world
    orders = await asyncio.gather(*(svc.place_order(cmd()) for _ in range(20)))
    assert len({o.id for o in orders}) == 1
    assert all(o.status is OrderStatus.CONFIRMED for o in orders)
    assert len(repo.docs) == 1 and len(catalog.reservations) == 1
    assert catalog.stock("p-mug") == 8 and len(repo.published) == 1


async def test_reused_key_with_different_request_is_refused(world):
    svc, _, _, _, _ = world
    await svc.place_order(cmd())
    with pytest.raises(IdempotencyKeyReusedError):
        await svc.place_order(cmd(lines=(("p-mug", 3),)))


async def test_same_key_from_another_user_is_another_order(world):
    svc, _, _, _, _ = world
    a = await svc.place_order(cmd(user="u-1"))
    b = await svc.place_order(cmd(user="u-2"))
    assert a.id != b.id


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lines": (("p-mug", 0),)}, "lines[0].quantity"),
        ({"lines": (("p-mug", -1),)}, "lines[0].quantity"),
        ({"lines": (("p-mug", 101),)}, "lines[0].quantity"),
        ({"lines": tuple((f"p-{i}", 1) for i in range(51))}, "lines"),
        ({"lines": ()}, "lines"),
        ({"address": None}, "shipping_address"),
        ({"address": Address("", "", "", "", "")}, "shipping_address.recipient_name"),
        ({"key": "short"}, "idempotency_key"),
    ],
)
async def test_invalid_request_is_rejected_before_any_write(world, kwargs, field):
    svc, repo, catalog, _, counter = world
    with pytest.raises(InvalidArgument) as err:
        await svc.place_order(cmd(**kwargs))
    assert field in [v.field for v in err.value.violations]
    assert repo.docs == {} and catalog.reserve_calls == 0
    assert counter.reasons == ["invalid_argument"]


async def test_unknown_product_leaves_no_order_and_no_reservation(world):
    svc, repo, catalog, _, counter = world
    with pytest.raises(UnknownProductError) as err:
        await svc.place_order(cmd(lines=(("p-mug", 1), ("p-nope", 1))))
    assert err.value.field == "lines[1].product_id"
    assert repo.visible() == [] and catalog.reservations == {} and catalog.stock("p-mug") == 10
    assert counter.reasons == ["unknown_product"]


async def test_out_of_stock_fails_precondition_and_stock_is_unchanged(world):
    svc, repo, catalog, _, _ = world
    with pytest.raises(OutOfStockError):
        await svc.place_order(cmd(lines=(("p-mug", 1), ("p-tea", 4))))
    assert catalog.stock("p-mug") == 10 and catalog.stock("p-tea") == 3
    assert repo.visible() == [] and repo.published == []


async def test_unknown_user_is_not_found_and_nothing_is_reserved(world):
    svc, repo, catalog, _, _ = world
    with pytest.raises(UserNotFoundError):
        await svc.place_order(cmd(user="u-ghost"))
    assert repo.docs == {} and catalog.reserve_calls == 0


async def test_the_users_own_placement_does_not_ask_the_user_directory(world):
    """A user placing their own order with their verified token exists (users are never
    deleted): no GetUser. An admin or a service placing for someone still asks."""
    svc = world[0]
    users = svc.users
    own = dataclasses.replace(cmd(key="key-own-01"), by_the_user=True)
    assert (await svc.place_order(own)).status is OrderStatus.CONFIRMED
    assert users.asked == 0
    assert (await svc.place_order(cmd(key="key-for-01"))).status is OrderStatus.CONFIRMED
    assert users.asked == 1
    with pytest.raises(UserNotFoundError):
        await svc.place_order(cmd(key="key-ghost-01", user="u-ghost"))
    assert users.asked == 2


async def test_lost_reserve_reply_is_compensated_and_key_can_be_retried(world):
    svc, repo, catalog, _, _ = world
    catalog.lose_reply = True
    with pytest.raises(CatalogUnavailableError):
        await svc.place_order(cmd())
    assert catalog.stock("p-mug") == 10 and repo.visible() == []  # released, tombstone only
    catalog.lose_reply = False
    order = await svc.place_order(cmd())  # same key: a fresh attempt
    assert order.status is OrderStatus.CONFIRMED and catalog.stock("p-mug") == 8


async def test_db_outage_after_reservation_is_finished_by_the_sweeper(world):
    svc, repo, catalog, clock, _ = world
    repo.fail_saves = 10  # confirm and the FAILED mark both fail
    with pytest.raises(ConnectionError):
        await svc.place_order(cmd())
    assert catalog.stock("p-mug") == 8  # reserved, order PENDING: half made for now
    repo.fail_saves = 0
    assert (await svc.sweep()).failed == 0  # not stale yet: a request may still finish it
    clock.advance(120)
    report = await svc.sweep()
    assert report.failed == 1 and catalog.stock("p-mug") == 10 and repo.visible() == []
    clock.advance(3600)
    assert (await svc.sweep()).deleted == 1 and repo.docs == {}


async def test_retry_after_a_deadline_resumes_the_same_pending_order(world):
    svc, repo, catalog, _, _ = world
    real_reserve = catalog.reserve_stock
    gate = asyncio.Event()

    async def slow_reserve(order_id, items):
        lines = await real_reserve(order_id, items)
        await gate.wait()  # the reply never arrives before the client's deadline
        return lines

    catalog.reserve_stock = slow_reserve
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(svc.place_order(cmd()), 0.05)
    (pending,) = repo.docs.values()
    assert pending.status is OrderStatus.PENDING  # left for the retry (or the sweeper)
    catalog.reserve_stock = real_reserve
    order = await svc.place_order(cmd())
    assert order.id == pending.id and order.status is OrderStatus.CONFIRMED
    assert len(catalog.reservations) == 1 and catalog.stock("p-mug") == 8


async def test_catalog_down_fails_placement_and_sweeper_releases_the_tombstone(world):
    svc, repo, catalog, clock, _ = world
    catalog.down = True
    with pytest.raises(CatalogUnavailableError):
        await svc.place_order(cmd())
    catalog.down = False
    (tomb,) = repo.docs.values()
    assert tomb.status is OrderStatus.FAILED and tomb.release_pending  # release deferred
    order = await svc.place_order(cmd())  # same key, fresh attempt
    assert order.status is OrderStatus.CONFIRMED and order.id != tomb.id
    clock.advance(10)
    assert (await svc.sweep()).released == 1
    assert catalog.stock("p-mug") == 8 and repo.docs[tomb.id].release_pending is False


async def test_cancel_releases_stock_and_emits_status_changed_once(world):
    svc, repo, catalog, _, _ = world
    order = await svc.place_order(cmd())
    cancelled = await svc.cancel_order(CancelOrder(order.id, "changed my mind", TRACE))
    again = await svc.cancel_order(CancelOrder(order.id, "again"))
    assert cancelled.status is again.status is OrderStatus.CANCELLED
    assert again.cancel_reason == "changed my mind"
    assert catalog.stock("p-mug") == 10
    changed = [e for e in repo.published if isinstance(e, OrderStatusChanged)]
    assert [(e.previous_status, e.status, e.reason) for e in changed] == [
        (OrderStatus.CONFIRMED, OrderStatus.CANCELLED, "changed my mind")
    ]


async def test_cancel_with_catalog_down_is_released_later_by_the_sweeper(world):
    svc, repo, catalog, clock, _ = world
    order = await svc.place_order(cmd())
    catalog.down = True
    await svc.cancel_order(CancelOrder(order.id))
    assert catalog.stock("p-mug") == 8 and repo.docs[order.id].release_pending
    catalog.down = False
    clock.advance(10)
    assert (await svc.sweep()).released == 1
    assert catalog.stock("p-mug") == 10 and not repo.docs[order.id].release_pending


async def test_status_moves_forward_only_and_shipped_cannot_be_cancelled(world):
    svc, repo, _, _, _ = world
    order = await svc.place_order(cmd())
    paid = await svc.update_status(UpdateOrderStatus(order.id, OrderStatus.PAID))
    same = await svc.update_status(UpdateOrderStatus(order.id, OrderStatus.PAID))
    assert paid.status is same.status is OrderStatus.PAID
    await svc.update_status(UpdateOrderStatus(order.id, OrderStatus.SHIPPED))
    with pytest.raises(InvalidTransitionError):
        await svc.update_status(UpdateOrderStatus(order.id, OrderStatus.PAID))
    with pytest.raises(InvalidTransitionError):
        await svc.cancel_order(CancelOrder(order.id))
    statuses = [e.status for e in repo.published if isinstance(e, OrderStatusChanged)]
    assert statuses == [OrderStatus.PAID, OrderStatus.SHIPPED]


async def test_cancel_during_placement_abandons_it_and_releases(world):
    svc, repo, catalog, _, _ = world
    real_reserve = catalog.reserve_stock

    async def reserve_then_cancel(order_id, items):
        lines = await real_reserve(order_id, items)
        await svc.cancel_order(CancelOrder(order_id, "too slow"))
        return lines

    catalog.reserve_stock = reserve_then_cancel
    with pytest.raises(PlacementAbandonedError):
        await svc.place_order(cmd())
    assert catalog.stock("p-mug") == 10
    (order,) = repo.docs.values()
    assert order.status is OrderStatus.CANCELLED


async def test_get_and_list_hide_failed_and_page_newest_first(world):
    svc, repo, _, _, _ = world
    ids = [(await svc.place_order(cmd(key=f"key-{i:06d}"))).id for i in range(5)]
    with pytest.raises(OutOfStockError):
        await svc.place_order(cmd(key="key-toomuch", lines=(("p-tea", 9),)))
    seen, token = [], ""
    while True:
        page, token = await svc.list_orders(ListOrders("u-1", 2, token))
        seen += [o.id for o in page]
        if not token:
            break
    assert seen == ids[::-1]
    failed = next(o for o in repo.docs.values() if not o.visible)
    with pytest.raises(OrderNotFoundError):
        await svc.get_order(failed.id)
    with pytest.raises(InvalidArgument):
        await svc.list_orders(ListOrders("u-1", 2, "garbage!!"))


def test_money_arithmetic_keeps_nanos_exact():
    assert Money("USD", 0, 333_333_333).times(3) == Money("USD", 0, 999_999_999)
    assert Money("USD", 1, 500_000_000).times(3) == Money("USD", 4, 500_000_000)
    assert Money.from_nanos("USD", -1_500_000_000) == Money("USD", -1, -500_000_000)


def test_events_are_frozen():
    ev = OrderStatusChanged(
        "e", dt.datetime.now(dt.UTC), "o", "u", OrderStatus.PAID, OrderStatus.SHIPPED
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.status = OrderStatus.PAID  # type: ignore[misc]
