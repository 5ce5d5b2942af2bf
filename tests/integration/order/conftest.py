"""Fixtures of the order store and relay tests: the stack parts they need, a Kafka config and
a MongoOrders on a scratch FerretDB database dropped afterwards."""

from __future__ import annotations

import uuid

import pytest

from services.order.repository import MongoOrders
from services.runtime.kafka import KafkaConfig


@pytest.fixture(scope="module")
def infra(stack):
    stack.require("ferretdb", "kafka", "registry")
    return stack


@pytest.fixture(scope="module")
def kafka_cfg(infra) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers=infra.kafka_bootstrap, client_id="order-test")


@pytest.fixture
async def repo(infra):
    name = f"order_test_{uuid.uuid4().hex[:10]}"
    r = MongoOrders(infra.mongo_url(), name)
    await r.open()
    yield r
    await r.client.drop_database(name)
    await r.close()
