"""The cart service in-process (real grpclib server, auth hook, PostgreSQL primary + replica,
Kafka + registry), wired as main.py wires it, on a private orders topic and consumer group
so it never competes with the stack's cart service for shop.orders.v1. Shoppers are real
users of the stack's user service with access tokens from its auth service."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from grpclib.client import Channel

from services.cart.config import CartConfig
from services.cart.main import CartApp
from services.runtime.auth import RuntimeAuth
from services.runtime.metrics import Metrics
from services.runtime.server import App
from shop.cart.v1 import cart_grpc
from tests.integration.cart.cart_helpers import Shopper, new_shopper
from tests.integration.consuming import private_topic, serving


@pytest.fixture(scope="module")
def infra(stack):
    return stack.require("postgres-primary", "postgres-replica", "kafka", "registry", "auth")


@pytest.fixture(scope="module")
def orders_topic(infra) -> Iterator[str]:
    with private_topic(infra.kafka_bootstrap, "ct") as name:
        yield name


@pytest.fixture(scope="module")
async def cart_app(infra, orders_topic) -> AsyncIterator[App]:
    env = {
        **os.environ,
        "CART_ORDERS_TOPIC": orders_topic,
        "CART_GROUP_ID": f"ct-{uuid.uuid4().hex[:8]}",
        "CART_RETRY_MAX_S": "0.5",
    }
    cart = CartApp(CartConfig.from_env(env), Metrics("cart-test"))
    # auth: the hook serve() installs
    async with serving(cart, "cart-test", auth=RuntimeAuth.from_env("cart-test")) as app:
        app.cart = cart  # type: ignore[attr-defined]
        yield app


@pytest.fixture
async def carts(cart_app) -> AsyncIterator[cart_grpc.CartServiceStub]:
    channel = Channel("127.0.0.1", cart_app.grpc_port)
    yield cart_grpc.CartServiceStub(channel)
    channel.close()


@pytest.fixture
async def shopper(infra) -> Shopper:
    return await new_shopper()
