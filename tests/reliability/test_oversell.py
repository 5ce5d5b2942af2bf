"""Stock is never oversold: 100 concurrent buyers (distinct idempotency keys, spread over
real user accounts with their own tokens) race for 10 units of one fresh product. Exactly
10 orders are confirmed, the stock ends at 0, every other buyer gets FAILED_PRECONDITION,
and the losers leave no order behind (only compensated FAILED tombstones, no reservation)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from motor.motor_asyncio import AsyncIOMotorClient

from shop.order.v1 import order_pb2 as opb
from tests.reliability.harness import (
    ADDRESS,
    FIGURES,
    Stubs,
    create_product,
    eventually,
    register_many,
    stock_of,
)

pytestmark = [pytest.mark.stack, pytest.mark.soak, pytest.mark.timeout(400)]

BUYERS = 100
UNITS = 10
ACCOUNTS = 20  # 5 buyers (checkout attempts with their own keys) per account
GIVE_UP_S = 150.0
RETRY = {Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED, Status.ABORTED}


async def test_hundred_buyers_ten_units_exactly_ten_orders(stack):
    stack.require("order", "auth")
    tag = f"ovs-{uuid.uuid4().hex[:8]}"
    stubs = Stubs()
    try:
        accounts = await register_many(stubs, tag, ACCOUNTS)
        product = await create_product(stubs, tag, UNITS)
        headers = [await a.metadata(stubs.auth) for a in accounts]
        go = asyncio.Event()
        retries: Counter[str] = Counter()

        async def buy(i: int) -> str:
            account = accounts[i % ACCOUNTS]
            request = opb.PlaceOrderRequest(
                idempotency_key=f"{tag}-{i:04d}",
                user_id=account.user_id,
                lines=[opb.LineItem(product_id=product.id, quantity=1)],
                shipping_address=ADDRESS,
            )
            await go.wait()  # all 100 leave together
            # Like a real client: resend with the same key while the outcome is unknown.
            deadline = time.monotonic() + GIVE_UP_S
            while True:
                try:
                    reply = await stubs.order.PlaceOrder(
                        request, metadata=headers[i % ACCOUNTS], timeout=15
                    )
                except GRPCError as exc:
                    if exc.status not in RETRY or time.monotonic() > deadline:
                        return exc.status.name
                    retries[exc.status.name] += 1
                    await asyncio.sleep(random.uniform(0.5, 2.0))
                    continue
                return opb.OrderStatus.Name(reply.order.status).removeprefix("ORDER_STATUS_")

        tasks = [asyncio.create_task(buy(i)) for i in range(BUYERS)]
        await asyncio.sleep(0.2)
        go.set()
        results = Counter(await asyncio.gather(*tasks))

        async def stock_settled() -> int | None:
            s = await stock_of(stubs, product.id)
            return s if s == 0 else None

        final = await eventually(stock_settled, within=30, every=0.5)
        final = await stock_of(stubs, product.id) if final is None else final

        client = AsyncIOMotorClient(stack.mongo_url(), serverSelectionTimeoutMS=10_000)
        try:
            docs = [
                d
                async for d in client["order"]["orders"].find(
                    {"idempotency_key": {"$regex": f"^{tag}-"}}, {"status": 1}
                )
            ]
        finally:
            client.close()
        stored = Counter(d["status"] for d in docs)
        FIGURES.oversell = {
            "buyers": BUYERS,
            "units": UNITS,
            "confirmed": results["CONFIRMED"],
            "failed_precondition": results["FAILED_PRECONDITION"],
            "other_answers": sum(
                v for k, v in results.items() if k not in ("CONFIRMED", "FAILED_PRECONDITION")
            ),
            "client_retries": dict(retries),
            "final_stock": final,
            "oversold": max(0, results["CONFIRMED"] - UNITS) + max(0, -final),
            "orders_in_store_not_failed": sum(v for k, v in stored.items() if k != "FAILED"),
        }
        print(FIGURES.oversell, dict(results), dict(stored))

        assert results["CONFIRMED"] == UNITS, f"answers: {dict(results)}"
        assert results["FAILED_PRECONDITION"] == BUYERS - UNITS, f"answers: {dict(results)}"
        assert final == 0
        # Losers leave no order: the store holds exactly the winners (FAILED = tombstone).
        assert stored["CONFIRMED"] == UNITS and sum(stored.values()) - stored["FAILED"] == UNITS
    finally:
        stubs.close()
