"""Recommendations over real gRPC: co-purchases counted from OrderPlaced records on a real
Kafka topic (each event once, also when delivered again), a poison record dead-lettered,
the same-category fallback through the real product service, bad input naming the field,
and a dead product service degrading to no suggestions rather than an error."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from services.recommendation.clients import GrpcCatalog
from services.recommendation.handlers import RecommendationHandlers
from services.runtime.metrics import Metrics
from services.runtime.server import App, ServerConfig
from shop.common.v1 import common_pb2
from shop.events import v1 as events
from shop.product.v1 import product_pb2
from shop.product.v1.product_grpc import ProductServiceStub
from shop.recommendation.v1 import recommendation_grpc
from shop.recommendation.v1 import recommendation_pb2 as pb
from shop.topology import SERVICES
from stack.callers import as_platform

pytestmark = pytest.mark.stack


def order_placed(product_ids: list[str]) -> events.OrderPlaced:
    price = events.Money(currency_code="USD", units=2, nanos=0)
    return events.OrderPlaced(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        order_id=uuid.uuid4().hex,
        user_id="u-test",
        lines=[events.OrderLine(p, "Thing", 1, price) for p in product_ids],
        total=price,
        shipping_city="Lyon",
    )


async def publish(producer, topic: str, rec: events.OrderPlaced) -> None:
    await producer.publish(topic, rec, key=rec.order_id, event_id=str(rec.event_id))


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 20) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.1)


def tally(reply: pb.ListRecommendationsResponse) -> list[tuple[str, int]]:
    return [(r.product_id, r.orders_together) for r in reply.recommendations]


async def also_bought(recs, product_id: str) -> list[tuple[str, int]]:
    """Its co-purchases; none yet for a made-up id is NOT_FOUND (the cold start asks the
    catalog, which does not know it)."""
    try:
        reply = await recs.ListRecommendations(pb.ListRecommendationsRequest(product_id=product_id))
    except GRPCError as exc:
        if exc.status is Status.NOT_FOUND:
            return []
        raise
    assert reply.source == pb.RECOMMENDATION_SOURCE_ALSO_BOUGHT
    return tally(reply)


async def test_orders_on_the_topic_become_also_bought_most_often_first(
    recs, producer, orders_topic
):
    tag = uuid.uuid4().hex[:8]
    a, b, c, d = (f"rx-{tag}-{x}" for x in "abcd")
    for basket in ([a, b], [a, b, c], [a, c], [a, b], [d]):
        await publish(producer, orders_topic, order_placed(basket))

    async def all_counted() -> bool:  # d's order comes last on its partition or another
        return await also_bought(recs, a) == [(b, 3), (c, 2)]

    await eventually(all_counted)  # never a itself, never d
    reply = await recs.ListRecommendations(pb.ListRecommendationsRequest(product_id=c))
    assert tally(reply) == [(a, 2), (b, 1)]
    one = await recs.ListRecommendations(pb.ListRecommendationsRequest(product_id=a, limit=1))
    assert tally(one) == [(b, 3)]


async def test_a_redelivered_event_is_counted_once(recs, producer, orders_topic, rec_app):
    tag = uuid.uuid4().hex[:8]
    a, b = f"rx-{tag}-a", f"rx-{tag}-b"
    rec = order_placed([a, b])
    outcomes = rec_app.rec.consumer.metrics.events
    duplicates = outcomes.labels("duplicate")._value.get()
    await publish(producer, orders_topic, rec)
    await publish(producer, orders_topic, rec)  # the relay's at-least-once, made certain
    await eventually(
        lambda: asyncio.sleep(0, outcomes.labels("duplicate")._value.get() > duplicates)
    )
    reply = await recs.ListRecommendations(pb.ListRecommendationsRequest(product_id=a))
    assert tally(reply) == [(b, 1)]


async def test_a_poison_record_is_dead_lettered_and_the_partition_moves_on(
    recs, producer, orders_topic, infra
):
    tag = uuid.uuid4().hex[:8]
    key = uuid.uuid4().hex
    await (await producer.send_raw(orders_topic, b"\x00not avro", key=key.encode()))
    rec = order_placed([f"rx-{tag}-a", f"rx-{tag}-b"])
    await producer.publish(orders_topic, rec, key=key, event_id=str(rec.event_id))

    async def counted() -> bool:
        return await also_bought(recs, f"rx-{tag}-a") == [(f"rx-{tag}-b", 1)]

    await eventually(counted)
    consumer = AIOKafkaConsumer(
        f"{orders_topic}.dlq", bootstrap_servers=infra.kafka_bootstrap, group_id=None,
        auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    try:
        found: list = []
        async with asyncio.timeout(20):
            while not any(r.key == key.encode() for r in found):
                for batch in (await consumer.getmany(timeout_ms=300)).values():
                    found.extend(batch)
    finally:
        await consumer.stop()
    dead = next(r for r in found if r.key == key.encode())
    headers = dict(dead.headers)
    assert dead.value == b"\x00not avro" and headers["x-dlq-reason"] == b"poison"
    assert headers["x-dlq-group"].startswith(b"rt-")


@pytest.fixture(scope="module")
async def scratch_category(infra) -> list[str]:
    """Three new products in a category of their own (no order holds them)."""
    channel = as_platform(Channel("127.0.0.1", SERVICES["product"].port))
    stub = ProductServiceStub(channel)
    category = f"rec-{uuid.uuid4().hex[:8]}"
    ids = []
    for i in range(3):
        reply = await stub.CreateProduct(
            product_pb2.CreateProductRequest(
                sku=f"REC-{uuid.uuid4().hex[:10]}", name=f"Rec thing {i}", category=category,
                price=common_pb2.Money(currency_code="USD", units=5), stock=1,
            )
        )  # fmt: skip
        ids.append(reply.product.id)
    yield ids
    for pid in ids:  # back to the shared "test" category (no RPC deletes a category)
        await stub.UpdateProduct(product_pb2.UpdateProductRequest(id=pid, category="test"))
    channel.close()


async def test_cold_start_suggests_the_same_category(recs, scratch_category):
    first, *others = scratch_category
    reply = await recs.ListRecommendations(pb.ListRecommendationsRequest(product_id=first))
    assert reply.source == pb.RECOMMENDATION_SOURCE_SAME_CATEGORY
    assert sorted(r.product_id for r in reply.recommendations) == sorted(others)
    assert all(r.orders_together == 0 for r in reply.recommendations)


async def test_an_unknown_product_without_co_purchases_is_not_found(recs):
    with pytest.raises(GRPCError) as err:
        await recs.ListRecommendations(pb.ListRecommendationsRequest(product_id="no-such-product"))
    assert err.value.status is Status.NOT_FOUND


@pytest.mark.parametrize(
    "request_,field",
    [
        (pb.ListRecommendationsRequest(product_id="bad id!"), "product_id"),
        (pb.ListRecommendationsRequest(product_id=""), "product_id"),
        (pb.ListRecommendationsRequest(product_id="p-0001", limit=21), "limit"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(recs, request_, field):
    with pytest.raises(GRPCError) as err:
        await recs.ListRecommendations(request_)
    assert err.value.status is Status.INVALID_ARGUMENT and field in (err.value.message or "")


async def test_a_dead_product_service_degrades_to_no_suggestions(rec_app, scratch_category):
    with socket.socket() as s:  # a port nothing listens on: the product service is "dead"
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    catalog = GrpcCatalog("127.0.0.1", dead_port)
    handlers = RecommendationHandlers(rec_app.rec.uow, catalog)
    app = App(
        ServerConfig(name="recommendation-dead-product", health_interval_s=0.2), [handlers], [],
        metrics=Metrics("recommendation-dead-product"), log_calls=False,
    )  # fmt: skip
    await app.start()
    channel = Channel("127.0.0.1", app.grpc_port)
    try:
        stub = recommendation_grpc.RecommendationServiceStub(channel)
        req = pb.ListRecommendationsRequest(product_id=scratch_category[0])
        reply = await stub.ListRecommendations(req)
    finally:
        channel.close()
        await catalog.close()
        await app.stop(drain_timeout=2)
    assert reply.source == pb.RECOMMENDATION_SOURCE_SAME_CATEGORY
    assert list(reply.recommendations) == []
