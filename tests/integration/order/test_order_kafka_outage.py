"""An order service that starts while Kafka is down: it serves (kafka health NOT_SERVING),
places orders, keeps its outbox gauges current, and publishes once Kafka is back. A private
instance (subprocess on spare ports, own database) so the stack's order service is untouched."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import urllib.request
import uuid

import pytest
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from services.runtime.kafka import KafkaConfig
from shop.common.v1 import common_pb2
from shop.order.v1 import order_pb2 as pb
from shop.order.v1.order_grpc import OrderServiceStub
from shop.product.v1 import product_pb2
from shop.product.v1.product_grpc import ProductServiceStub
from shop.user.v1 import user_pb2
from shop.user.v1.user_grpc import UserServiceStub
from stack.callers import as_platform
from tests.integration.order.order_helpers import TopicTail

pytestmark = pytest.mark.stack

ADDR = common_pb2.Address(
    recipient_name="Ada", line1="1 Main St", city="Lyon", postal_code="69001", country_code="FR"
)


@pytest.fixture(scope="module")
def up(stack):
    return stack.require("ferretdb", "kafka", "registry", "user", "product", "auth")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def health(port: int, service: str = "") -> int | None:
    channel = Channel("127.0.0.1", port)
    try:
        reply = await asyncio.wait_for(
            HealthStub(channel).Check(HealthCheckRequest(service=service)), 2
        )
        return reply.status
    except Exception:
        return None
    finally:
        channel.close()


def gauge(metrics_port: int, name: str) -> float | None:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=3) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


async def until(check, seconds: float, what: str):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        if value := await check():
            return value
        await asyncio.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


async def test_order_service_starts_and_places_orders_while_kafka_is_down(up):
    kafka_cfg = KafkaConfig(bootstrap_servers=up.kafka_bootstrap, client_id="order-outage-test")
    database = f"order_outage_{uuid.uuid4().hex[:8]}"
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "ORDER_GRPC_PORT": str(grpc_port),
        "ORDER_METRICS_PORT": str(metrics_port),
        "ORDER_MONGO_URL": up.mongo_url(),
        "ORDER_MONGO_DATABASE": database,
        "ORDER_KAFKA_BOOTSTRAP": up.kafka_bootstrap,
        "ORDER_SWEEP_INTERVAL_S": "0",
        "ORDER_LOG_LEVEL": "WARNING",
        "ORDER_ACCESS_LOG": "off",
    }
    tag = uuid.uuid4().hex[:8]
    users = as_platform(Channel("127.0.0.1", 50052))
    products = as_platform(Channel("127.0.0.1", 50051))
    user = (
        await UserServiceStub(users).RegisterUser(
            user_pb2.RegisterUserRequest(
                email=f"outage-{tag}@example.com", password="correct horse", display_name="Ada"
            )
        )
    ).user
    product = (
        await ProductServiceStub(products).CreateProduct(
            product_pb2.CreateProductRequest(
                sku=f"OUT-{tag}", name="Thing", category="test", stock=10,
                price=common_pb2.Money(currency_code="USD", units=2),
            )
        )
    ).product  # fmt: skip
    users.close()
    products.close()
    orders = as_platform(Channel("127.0.0.1", grpc_port))
    proc = None
    async with TopicTail(kafka_cfg) as tail:
        up.stop("kafka")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.order.main", env=env
            )
            serving = HealthCheckResponse.SERVING
            await until(lambda: _is(health(grpc_port), serving), 60, "order serving w/o Kafka")
            assert await health(grpc_port, "kafka") == HealthCheckResponse.NOT_SERVING
            order = (
                await OrderServiceStub(orders).PlaceOrder(
                    pb.PlaceOrderRequest(
                        idempotency_key=f"k-{uuid.uuid4().hex}",
                        user_id=user.id,
                        lines=[pb.LineItem(product_id=product.id, quantity=1)],
                        shipping_address=ADDR,
                    )
                )
            ).order
            assert order.status == pb.ORDER_STATUS_CONFIRMED
            # The gauges see the waiting event although no relay pass succeeds.
            await until(
                lambda: _gauge_at_least(metrics_port, "order_outbox_backlog_events", 1),
                15,
                "backlog gauge while Kafka is down",
            )
        finally:
            up.start("kafka")  # always give the stack its broker back
        try:
            got = await tail.collect(lambda e: e.key == order.id, lambda k: len(k) >= 1, 90)
            assert [e.name for e in got][:1] == ["shop.events.v1.OrderPlaced"]
            await until(lambda: _is(health(grpc_port, "kafka"), serving), 30, "kafka SERVING")
        finally:
            orders.close()
            if proc is not None and proc.returncode is None:
                proc.terminate()
                await proc.wait()
            from motor.motor_asyncio import AsyncIOMotorClient

            client = AsyncIOMotorClient(up.mongo_url())
            await client.drop_database(database)
            client.close()


async def _is(value, expected) -> bool:  # type: ignore[no-untyped-def]
    return (await value) == expected


async def _gauge_at_least(port: int, name: str, at_least: float) -> bool:
    value = await asyncio.to_thread(gauge, port, name)
    return value is not None and value >= at_least
