"""The OrderPlaced consumer's routing without a broker: a failing store is retried in place
(the offset is committed only once the record is applied), poison goes to the DLQ and the
partition moves on, other event types are skipped. Fakes of the runtime's consumer and
producer; the use case runs over the in-memory unit of work of test_cart_service."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from services.cart.consumer import CartEventMetrics, OrderPlacedConsumer
from services.cart.domain import Cart, CartItem
from services.runtime.kafka import ConsumedEvent
from tests.unit.cart.fakes import MemoryCarts, MemoryUnitOfWork

TOPIC = "shop.orders.v1"


def record(offset: int, name: str, value: dict[str, Any], error: Exception | None = None):
    return ConsumedEvent(
        topic=TOPIC, partition=0, offset=offset, key="k", name=name, value=value,
        event_id=value.get("event_id"), trace=None, headers={}, raw=b"raw", timestamp_ms=0,
        error=error,
    )  # fmt: skip


def placed(offset: int, user: str, lines: list[tuple[str, int]]) -> ConsumedEvent:
    return record(
        offset,
        "shop.events.v1.OrderPlaced",
        {
            "event_id": str(uuid.uuid4()),
            "order_id": f"o-{offset}",
            "user_id": user,
            "lines": [{"product_id": p, "quantity": q} for p, q in lines],
        },
    )


class FakeRaw:
    def __init__(self, log: list[ConsumedEvent]) -> None:
        self.log = log
        self.position = 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position = offset


class FakeConsumer:
    """One partition: getmany returns the records from the position on, once each."""

    def __init__(self, log: list[ConsumedEvent]) -> None:
        self.raw = FakeRaw(log)
        self.committed: list[int] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> list[ConsumedEvent]:
        batch = self.raw.log[self.raw.position :]
        self.raw.position = len(self.raw.log)
        if not batch:
            await asyncio.sleep(0.001)
        return batch

    async def commit_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(offsets[TopicPartition(TOPIC, 0)])


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, bytes]]] = []

    async def send_raw(self, topic: str, value: bytes, *, key: Any, headers: Any):
        self.sent.append((topic, value, dict(headers)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class FlakyUow:
    """The in-memory unit of work (fakes.py) whose writes fail the first `failures` times."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def write(self) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database down")
        return self.inner.write()

    def read(self) -> Any:
        return self.inner.read()


def consumer_for(log, uow) -> tuple[OrderPlacedConsumer, FakeConsumer, FakeProducer]:
    fake, producer = FakeConsumer(log), FakeProducer()
    c = OrderPlacedConsumer(
        fake, producer, lambda: uow, CartEventMetrics(CollectorRegistry()),  # type: ignore[arg-type]
        dlq_topic=f"{TOPIC}.dlq", group_id="cart", retry_max_s=0.01,
    )  # fmt: skip
    return c, fake, producer


async def run_until(c: OrderPlacedConsumer, done) -> None:
    task = asyncio.create_task(c.run())
    try:
        for _ in range(1000):  # at most ~5 s
            if done():
                break
            await asyncio.sleep(0.005)
        assert done(), "the consumer did not get there"
    finally:
        c.stop()
        await task


async def test_a_failing_store_is_retried_in_place_and_committed_only_after() -> None:
    store = MemoryCarts()
    store.carts["u-1"] = Cart("u-1", (CartItem("p-1", 2), CartItem("p-2", 1)))
    uow = FlakyUow(MemoryUnitOfWork(store), failures=2)
    c, fake, _ = consumer_for([placed(0, "u-1", [("p-1", 2)])], uow)
    await run_until(c, lambda: fake.committed)
    assert store.carts["u-1"].items == (CartItem("p-2", 1),)
    assert fake.committed == [1], "committed once, after the record was applied"
    assert c.metrics.failures._value.get() == 2


async def test_poison_goes_to_the_dlq_and_the_next_record_is_applied() -> None:
    store = MemoryCarts()
    store.carts["u-1"] = Cart("u-1", (CartItem("p-1", 1),))
    log = [
        record(0, "", {}, error=ValueError("not avro")),
        record(1, "shop.events.v1.OrderPlaced", {"event_id": "e-1"}),  # fields missing
        record(2, "shop.events.v1.OrderStatusChanged", {"event_id": "e-2"}),
        placed(3, "u-1", [("p-1", 1)]),
    ]
    c, fake, producer = consumer_for(log, MemoryUnitOfWork(store))
    await run_until(c, lambda: fake.committed and fake.committed[-1] == 4)
    assert [(t, h["x-dlq-source-offset"]) for t, _, h in producer.sent] == [
        (f"{TOPIC}.dlq", b"0"),
        (f"{TOPIC}.dlq", b"1"),
    ]
    assert store.carts["u-1"].items == ()
