"""The recommendation service in-process (real grpclib server, PostgreSQL primary, Kafka +
registry, the stack's product service for cold starts), wired as main.py wires it, on a
private orders topic and consumer group so it never competes with the stack's
recommendation service for shop.orders.v1."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from grpclib.client import Channel

from services.recommendation.config import RecommendationConfig
from services.recommendation.main import RecommendationApp
from services.runtime.auth import ServiceIdentity, register_process_identity
from services.runtime.kafka import AvroSerde, EventProducer, KafkaConfig
from services.runtime.metrics import Metrics
from services.runtime.server import App
from shop.recommendation.v1 import recommendation_grpc
from shop.topology import REGISTRY_URL
from stack import postgres
from tests.integration.consuming import private_topic, serving


@pytest.fixture(scope="module")
def infra(stack):
    stack.require("postgres-primary", "kafka", "registry", "product")
    postgres._bootstrap_primary()  # a stack started before the manifest named the service
    return stack


@pytest.fixture(scope="module")
def orders_topic(infra) -> Iterator[str]:
    with private_topic(infra.kafka_bootstrap, "rt") as name:
        yield name


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
    async with serving(rec, "recommendation-test") as app:
        app.rec = rec  # type: ignore[attr-defined]
        yield app


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
