"""The cart service in-process (real grpclib server, auth hook, PostgreSQL primary + replica,
Kafka + registry), wired as main.py wires it, on a private orders topic and consumer group
so it never competes with the stack's cart service for shop.orders.v1. Shoppers are real
users of the stack's user service with access tokens from its auth service."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from grpclib.client import Channel

from services.cart.config import CartConfig
from services.cart.main import CartApp
from services.runtime.auth import RuntimeAuth
from services.runtime.metrics import Metrics
from services.runtime.server import App, ServerConfig
from shop.cart.v1 import cart_grpc
from tests.integration.cart.cart_helpers import Shopper, new_shopper


@pytest.fixture(scope="module")
def infra(stack):
    return stack.require("postgres-primary", "postgres-replica", "kafka", "registry", "auth")


@pytest.fixture(scope="module")
def orders_topic(infra) -> Any:
    name = f"ct.{uuid.uuid4().hex[:10]}.orders"
    names = [name, f"{name}.dlq"]
    admin = AdminClient({"bootstrap.servers": infra.kafka_bootstrap})
    for fut in admin.create_topics([NewTopic(n, 2, 1) for n in names]).values():
        fut.result(timeout=20)
    yield name
    for fut in admin.delete_topics(names).values():
        fut.exception(timeout=20)


@pytest.fixture(scope="module")
async def cart_app(infra, orders_topic) -> AsyncIterator[CartApp]:
    env = {
        **os.environ,
        "CART_ORDERS_TOPIC": orders_topic,
        "CART_GROUP_ID": f"ct-{uuid.uuid4().hex[:8]}",
        "CART_RETRY_MAX_S": "0.5",
    }
    cart = CartApp(CartConfig.from_env(env), Metrics("cart-test"))
    app = App(
        ServerConfig(name="cart-test", health_interval_s=0.2), [cart.handlers()], [cart],
        metrics=Metrics("cart-test-server"),
        auth=RuntimeAuth.from_env("cart-test"),  # the hook serve() installs
        log_calls=False,
    )  # fmt: skip
    await app.start()
    task = asyncio.create_task(cart.consume())
    app.cart = cart  # type: ignore[attr-defined]
    yield app
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await app.stop(drain_timeout=2)


@pytest.fixture
async def carts(cart_app) -> AsyncIterator[cart_grpc.CartServiceStub]:
    channel = Channel("127.0.0.1", cart_app.grpc_port)
    yield cart_grpc.CartServiceStub(channel)
    channel.close()


@pytest.fixture
async def shopper(infra) -> Shopper:
    return await new_shopper()
