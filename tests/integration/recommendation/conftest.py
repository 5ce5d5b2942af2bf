"""The recommendation service in-process (real grpclib server, PostgreSQL primary, Kafka +
registry, the stack's product service for cold starts), wired as main.py wires it, on a
private orders topic and consumer group so it never competes with the stack's
recommendation service for shop.orders.v1."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from grpclib.client import Channel

from services.recommendation.config import RecommendationConfig
from services.recommendation.main import RecommendationApp
from services.runtime.auth import ServiceIdentity, register_process_identity
from services.runtime.kafka import AvroSerde, EventProducer, KafkaConfig
from services.runtime.metrics import Metrics
from services.runtime.server import App, ServerConfig
from shop.recommendation.v1 import recommendation_grpc
from shop.topology import REGISTRY_URL
from stack import postgres


@pytest.fixture(scope="module")
def infra(stack):
    stack.require("postgres-primary", "kafka", "registry", "product")
    postgres._bootstrap_primary()  # a stack started before the manifest named the service
    return stack


@pytest.fixture(scope="module")
def orders_topic(infra) -> Any:
    name = f"rt.{uuid.uuid4().hex[:10]}.orders"
    names = [name, f"{name}.dlq"]
    admin = AdminClient({"bootstrap.servers": infra.kafka_bootstrap})
    for fut in admin.create_topics([NewTopic(n, 2, 1) for n in names]).values():
        fut.result(timeout=20)
    yield name
    for fut in admin.delete_topics(names).values():
        fut.exception(timeout=20)


@pytest.fixture(scope="module")
async def rec_app(infra, orders_topic) -> AsyncIterator[App]:
    env = {
        **os.environ,
        "RECOMMENDATION_ORDERS_TOPIC": orders_topic,
        "RECOMMENDATION_GROUP_ID": f"rt-{uuid.uuid4().hex[:8]}",
        "RECOMMENDATION_RETRY_MAX_S": "0.5",
    }
    cfg = RecommendationConfig.from_env(env)
    # Its calls to the product service carry recommendation's own service token.
    register_process_identity(ServiceIdentity.from_env("recommendation", env))
    rec = RecommendationApp(cfg, Metrics("recommendation-test"), service="recommendation-test")
    app = App(
        ServerConfig(name="recommendation-test", health_interval_s=0.2), [rec.handlers()],
        [rec], metrics=Metrics("recommendation-test-server"), log_calls=False,
    )  # fmt: skip
    await app.start()
    task = asyncio.create_task(rec.consume())
    app.rec = rec  # type: ignore[attr-defined]
    yield app
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await app.stop(drain_timeout=2)


@pytest.fixture
async def recs(rec_app) -> AsyncIterator[recommendation_grpc.RecommendationServiceStub]:
    channel = Channel("127.0.0.1", rec_app.grpc_port)
    yield recommendation_grpc.RecommendationServiceStub(channel)
    channel.close()


@pytest.fixture
async def producer(infra):
    cfg = KafkaConfig(bootstrap_servers=infra.kafka_bootstrap, registry_url=REGISTRY_URL)
    async with EventProducer(cfg, AvroSerde(REGISTRY_URL, auto_register=True)) as p:
        yield p
