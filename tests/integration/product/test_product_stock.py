"""Product stock over real gRPC, against the real PostgreSQL primary: reservations are exact
under concurrency, atomic across lines, idempotent per order, and released once.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from shop.product.v1 import product_pb2 as pb
from tests.integration.product.product_helpers import code_of, new_product, usd

pytestmark = pytest.mark.stack


async def test_fifty_concurrent_reservations_for_ten_units_exactly_ten_succeed(product_stub):
    product = await new_product(product_stub, stock=10)

    async def reserve(i: int) -> Status:
        try:
            await product_stub.ReserveStock(
                pb.ReserveStockRequest(
                    order_id=f"o-{uuid.uuid4().hex}",
                    lines=[pb.StockLine(product_id=product.id, quantity=1)],
                )
            )
            return Status.OK
        except GRPCError as exc:
            return exc.status

    results = await asyncio.gather(*(reserve(i) for i in range(50)))
    assert results.count(Status.OK) == 10
    assert results.count(Status.FAILED_PRECONDITION) == 40
    got = await product_stub.GetProduct(
        pb.GetProductRequest(id=product.id), metadata={"x-shop-lsn": "FFFFFFFF/0"}
    )
    assert got.product.stock == 0


async def test_concurrent_multi_line_reservations_in_any_line_order_never_deadlock(product_stub):
    """Forty orders for the same three products, each listing them in its own order: every
    reservation locks them in product-id order, so none is aborted as a deadlock."""
    products = [await new_product(product_stub, stock=100) for _ in range(3)]
    rng = random.Random(7)

    async def reserve(i: int) -> Status:
        lines = [pb.StockLine(product_id=p.id, quantity=1) for p in products]
        rng.shuffle(lines)
        try:
            await product_stub.ReserveStock(
                pb.ReserveStockRequest(order_id=f"o-{uuid.uuid4().hex}", lines=lines)
            )
            return Status.OK
        except GRPCError as exc:
            return exc.status

    results = await asyncio.gather(*(reserve(i) for i in range(40)))
    assert results == [Status.OK] * 40
    for p in products:
        got = await product_stub.GetProduct(
            pb.GetProductRequest(id=p.id), metadata={"x-shop-lsn": "FFFFFFFF/0"}
        )
        assert got.product.stock == 60


async def test_reserve_is_atomic_across_lines_and_returns_catalog_prices(product_stub):
    a = await new_product(product_stub, stock=5, price=usd(3, 250_000_000))
    b = await new_product(product_stub, stock=1)
    order = f"o-{uuid.uuid4().hex}"
    too_much = pb.ReserveStockRequest(
        order_id=order,
        lines=[
            pb.StockLine(product_id=a.id, quantity=2),
            pb.StockLine(product_id=b.id, quantity=2),
        ],
    )
    assert await code_of(product_stub.ReserveStock(too_much)) is Status.FAILED_PRECONDITION
    after = await product_stub.GetProduct(
        pb.GetProductRequest(id=a.id), metadata={"x-shop-lsn": "FFFFFFFF/0"}
    )
    assert after.product.stock == 5  # the first line was rolled back with the second
    ok = pb.ReserveStockRequest(
        order_id=order,
        lines=[
            pb.StockLine(product_id=a.id, quantity=2),
            pb.StockLine(product_id=b.id, quantity=1),
        ],
    )
    reply = await product_stub.ReserveStock(ok)
    prices = {ln.product_id: (ln.unit_price.units, ln.unit_price.nanos) for ln in reply.lines}
    assert prices[a.id] == (3, 250_000_000)
    assert not reply.replayed


async def test_repeated_reserve_for_same_order_changes_nothing(product_stub):
    product = await new_product(product_stub, stock=10)
    req = pb.ReserveStockRequest(
        order_id=f"o-{uuid.uuid4().hex}", lines=[pb.StockLine(product_id=product.id, quantity=3)]
    )
    first = await product_stub.ReserveStock(req)
    again = await asyncio.gather(*(product_stub.ReserveStock(req) for _ in range(5)))
    assert not first.replayed and all(r.replayed for r in again)
    assert all(list(r.lines) == list(first.lines) for r in again)
    got = await product_stub.GetProduct(
        pb.GetProductRequest(id=product.id), metadata={"x-shop-lsn": "FFFFFFFF/0"}
    )
    assert got.product.stock == 7


async def test_release_gives_stock_back_once_and_blocks_late_reserve(product_stub):
    product = await new_product(product_stub, stock=4)
    order = f"o-{uuid.uuid4().hex}"
    req = pb.ReserveStockRequest(
        order_id=order, lines=[pb.StockLine(product_id=product.id, quantity=4)]
    )
    await product_stub.ReserveStock(req)
    rel = pb.ReleaseStockRequest(order_id=order)
    assert (await product_stub.ReleaseStock(rel)).released is True
    assert (await product_stub.ReleaseStock(rel)).released is False
    got = await product_stub.GetProduct(
        pb.GetProductRequest(id=product.id), metadata={"x-shop-lsn": "FFFFFFFF/0"}
    )
    assert got.product.stock == 4
    assert await code_of(product_stub.ReserveStock(req)) is Status.FAILED_PRECONDITION
    # release before reserve (saga gave up early): the late reserve takes nothing
    early = f"o-{uuid.uuid4().hex}"
    assert (
        await product_stub.ReleaseStock(pb.ReleaseStockRequest(order_id=early))
    ).released is False
    late = pb.ReserveStockRequest(
        order_id=early, lines=[pb.StockLine(product_id=product.id, quantity=1)]
    )
    assert await code_of(product_stub.ReserveStock(late)) is Status.FAILED_PRECONDITION


async def test_reserve_unknown_product_is_not_found(product_stub):
    req = pb.ReserveStockRequest(
        order_id=f"o-{uuid.uuid4().hex}", lines=[pb.StockLine(product_id="p-missing", quantity=1)]
    )
    assert await code_of(product_stub.ReserveStock(req)) is Status.NOT_FOUND
