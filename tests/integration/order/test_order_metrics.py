"""Order metrics (services/order/metrics.py) with real servers: the running order service's
/metrics after placements and its relay's pass, and the outbox gauges and publish histogram
of a relay on its own registry, where the backlog's age is known."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import httpx
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from services.order.domain import Address, LineItem, Money, Order, OrderLine, PlaceOrder
from services.order.metrics import OrderMetrics
from services.order.outbox import OutboxRelay
from services.order.repository import MongoOrders
from services.runtime.kafka import AvroSerde, EventProducer, KafkaConfig
from shop.order.v1 import order_pb2 as pb
from shop.order.v1.order_grpc import OrderServiceStub
from shop.product.v1.product_grpc import ProductServiceStub
from shop.topology import SERVICES
from shop.user.v1.user_grpc import UserServiceStub
from stack.callers import as_platform
from tests.integration.order.order_helpers import (
    SHIPPING,
    TopicTail,
    buyer_and_product,
    scratch_topic,
)

pytestmark = pytest.mark.stack

METRICS_URL = "http://127.0.0.1:9453/metrics"  # ORDER_METRICS_PORT's default, as the stack runs it
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape() -> Samples:
    async with httpx.AsyncClient(timeout=5) as http:
        reply = await http.get(METRICS_URL)
    reply.raise_for_status()
    return parse(reply.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def up(stack):
    return stack.require("order", "auth")  # auth: the demo admin's token


async def test_order_service_exports_placements_and_its_relays_publishing(up):
    chans = [
        as_platform(Channel("127.0.0.1", p))
        for p in (SERVICES["order"].port, SERVICES["product"].port, SERVICES["user"].port)
    ]
    orders, products, users = (
        OrderServiceStub(chans[0]),
        ProductServiceStub(chans[1]),
        UserServiceStub(chans[2]),
    )
    kafka_cfg = KafkaConfig(bootstrap_servers=up.kafka_bootstrap, client_id="order-metrics")
    tag = uuid.uuid4().hex[:8]
    try:
        user, product = await buyer_and_product(users, products, "metrics", 3)

        def place(key: str, quantity: int) -> pb.PlaceOrderRequest:
            return pb.PlaceOrderRequest(
                idempotency_key=key,
                user_id=user.id,
                lines=[pb.LineItem(product_id=product.id, quantity=quantity)],
                shipping_address=SHIPPING,
            )

        before = await scrape()
        async with TopicTail(kafka_cfg) as tail:
            key = f"k-{tag}"
            order = (await orders.PlaceOrder(place(key, 1))).order
            assert (await orders.PlaceOrder(place(key, 1))).order.id == order.id  # replayed
            with pytest.raises(GRPCError) as err:
                await orders.PlaceOrder(place(f"k-{tag}-big", 9))
            assert err.value.status == Status.FAILED_PRECONDITION
            got = await tail.collect(lambda e: e.key == order.id, lambda k: len(k) >= 1, 30)
        assert got, "the service's relay did not publish the order"

        # The relay observes the ack just before it marks; give the scrape a moment.
        after = await scrape()
        for _ in range(50):
            if value(after, "order_outbox_publish_seconds_count") > value(
                before, "order_outbox_publish_seconds_count"
            ):
                break
            await asyncio.sleep(0.2)
            after = await scrape()
    finally:
        for c in chans:
            c.close()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("orders_placed_total", replayed="false") >= 1
    assert moved("orders_placed_total", replayed="true") >= 1
    assert moved("orders_failed_total", reason="out_of_stock") >= 1
    published = moved("order_outbox_publish_seconds_count")
    assert published >= 1 and moved("order_outbox_events_published_total") >= 1
    mean = moved("order_outbox_publish_seconds_sum") / published
    assert 0 < mean < 30  # an acks=all round trip on loopback, well under its timeout
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in after.items()
        if name == "order_outbox_publish_seconds_bucket"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert buckets[-1] == (float("inf"), value(after, "order_outbox_publish_seconds_count"))
    assert ("order_outbox_backlog_events", frozenset()) in after
    assert value(after, "order_outbox_backlog_events") >= 0
    assert 0 <= value(after, "order_outbox_oldest_pending_age_seconds") < 120


async def test_relay_gauges_show_backlog_age_then_publish_latency(stack):
    """On a registry of its own: three events that occurred 40 s ago show as a backlog of 3
    aged ~40 s; one relay pass publishes them (three latency observations) and the gauges
    fall to zero."""
    stack.require("ferretdb", "kafka", "registry")
    kafka_cfg = KafkaConfig(bootstrap_servers=stack.kafka_bootstrap, client_id="order-metrics")
    repo = MongoOrders(stack.mongo_url(), f"order_test_{uuid.uuid4().hex[:10]}")
    await repo.open()
    registry = CollectorRegistry()
    metrics = OrderMetrics(registry)

    def sample(name: str) -> float:
        return registry.get_sample_value(name) or 0.0

    try:
        then = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=40)
        for i in range(3):
            cmd = PlaceOrder(f"u-met-{i}", f"key-{uuid.uuid4().hex}", (LineItem("p-1", 1),),
                             Address("Ada", "1 Main St", "Lyon", "69001", "FR"))  # fmt: skip
            order = Order.start(uuid.uuid4().hex, cmd, cmd.lines, then)
            assert await repo.add(order)
            order.confirm([OrderLine("p-1", "Mug", 1, Money("USD", 3, 0))], then, None)
            assert await repo.save(order)
        async with scratch_topic(kafka_cfg) as topic:
            serde = AvroSerde(kafka_cfg.registry_url, auto_register=True)
            async with EventProducer(kafka_cfg, serde) as producer:
                relay = OutboxRelay(repo, producer, topic=topic, metrics=metrics)
                await relay.refresh_gauges()
                assert sample("order_outbox_backlog_events") == 3
                assert 40 <= sample("order_outbox_oldest_pending_age_seconds") < 40 + 120
                assert sample("order_outbox_publish_seconds_count") == 0

                assert await relay.run_once() == 3
                await relay.refresh_gauges()
        assert sample("order_outbox_backlog_events") == 0
        assert sample("order_outbox_oldest_pending_age_seconds") == 0
        assert sample("order_outbox_publish_seconds_count") == 3
        assert 0 < sample("order_outbox_publish_seconds_sum") < 3 * 30
        assert sample("order_outbox_events_published_total") == 3
        assert sample("order_outbox_publish_failures_total") == 0
    finally:
        await repo.client.drop_database(repo.database)  # type: ignore[union-attr]
        await repo.close()
