"""The user outbox relay against real Kafka and the registry: register a user over gRPC and
exactly one UserRegistered for that id lands on shop.users.v1, readable by confluent-kafka's
AvroDeserializer; the outbox gauges and the producer's counters follow.

The service runs against a throwaway database, so the stack's own user relay (which drains
the `user` database) never publishes these rows and the counts are this relay's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable

import asyncpg
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from grpclib.client import Channel
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from services.runtime.auth import RuntimeAuth
from services.runtime.db import Database
from services.runtime.kafka import HEADER_EVENT_ID, KafkaConfig
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import App, ServerConfig
from services.user.config import UserConfig
from services.user.handlers import UserHandlers
from services.user.main import MIGRATIONS
from services.user.metrics import UserOutboxMetrics
from services.user.outbox import backlog, run_relay
from services.user.passwords import Argon2Hasher
from services.user.repository import SqlUserUnitOfWork
from shop.topology import USERS_TOPIC as USERS
from shop.user.v1 import user_grpc
from shop.user.v1 import user_pb2 as pb

pytestmark = pytest.mark.stack


async def eventually(check: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    for fam in text_string_to_metric_families(metrics.exposition().decode()):
        for s in fam.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def end_offsets(bootstrap: str) -> list[TopicPartition]:
    """The current end of every partition of shop.users.v1: what follows is this test's."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}"})
    try:
        parts = consumer.list_topics(USERS, timeout=10).topics[USERS].partitions
        return [
            TopicPartition(USERS, p, consumer.get_watermark_offsets(TopicPartition(USERS, p))[1])
            for p in parts
        ]
    finally:
        consumer.close()


def read_keyed(bootstrap: str, start: list[TopicPartition], key: str, quiet_s: float) -> list:
    """Records with `key` from `start` on; stops `quiet_s` after the first one (long enough
    for a duplicate to show up) or after 30 s without any."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign(start)
    found: list = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            if msg.key() == key.encode():
                found.append(msg)
                deadline = min(deadline, time.monotonic() + quiet_s)
    finally:
        consumer.close()
    return found


@pytest.fixture(scope="module")
async def private_user(stack):
    stack.require("postgres-primary", "postgres-replica", "kafka", "registry")
    name = f"user_outbox_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(stack.pg_admin_dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER shopmesh')
    finally:
        await admin.close()
    config = UserConfig.from_env({"USER_DB_NAME": name})
    metrics = Metrics("user-outbox-test")
    db = Database(config.db, metrics, service="user-outbox-test")
    await db.open()
    await migrate(db.primary, MIGRATIONS)
    hasher = Argon2Hasher(time_cost=1, memory_cost=1024)  # cheap: the hash is not under test
    app = App(
        ServerConfig(name="user-outbox-test"),
        [UserHandlers(lambda: SqlUserUnitOfWork(db.unit_of_work()), hasher)],
        [db],
        metrics=metrics,
        auth=RuntimeAuth.from_env("user-outbox-test"),
        log_calls=False,
    )
    await app.start()
    channel = Channel("127.0.0.1", app.grpc_port)  # RegisterUser is public
    try:
        yield db, metrics, user_grpc.UserServiceStub(channel)
    finally:
        channel.close()
        await app.stop(drain_timeout=2)
        await db.close()
        admin = await asyncpg.connect(stack.pg_admin_dsn())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_registered_user_is_published_once_and_decodes_through_the_registry(
    stack, private_user
):
    db, metrics, stub = private_user
    outbox_metrics = UserOutboxMetrics(metrics.registry)
    kafka = KafkaConfig(bootstrap_servers=stack.kafka_bootstrap, client_id="user-outbox-test")
    start = await asyncio.to_thread(end_offsets, kafka.bootstrap_servers)

    email = f"outbox-{uuid.uuid4().hex[:10]}@example.com"
    reply = await stub.RegisterUser(
        pb.RegisterUserRequest(email=email, password="correct horse 42", display_name="Ada")
    )
    user_id = reply.user.id
    count, age = await backlog(db)
    assert count == 1 and age >= 0  # waiting for a relay

    relay = asyncio.create_task(
        run_relay(db, kafka, 0.1, metrics=metrics, outbox_metrics=outbox_metrics, gauge_every_s=0.2)
    )
    try:
        await eventually(
            lambda: sample(metrics, "user_outbox_events_published_total") == 1, 30, "published"
        )
        await eventually(
            lambda: sample(metrics, "user_outbox_backlog_events") == 0, 10, "backlog gauge 0"
        )
        assert sample(metrics, "user_outbox_oldest_pending_age_seconds") == 0
        assert sample(metrics, "user_outbox_publish_failures_total") == 0
        # The producer got the runtime's metrics: the send is counted per topic.
        assert sample(metrics, "kafka_produced_total", topic=USERS, result="ok") == 1
        # Consume while the relay keeps running, so a re-send would be seen.
        records = await asyncio.to_thread(read_keyed, kafka.bootstrap_servers, start, user_id, 3)
    finally:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay

    assert len(records) == 1, f"{len(records)} UserRegistered records for {user_id}"
    msg = records[0]
    decoded = AvroDeserializer(SchemaRegistryClient({"url": kafka.registry_url}))(
        msg.value(), SerializationContext(USERS, MessageField.VALUE)
    )
    assert decoded["user_id"] == user_id
    assert decoded["email"] == email and decoded["display_name"] == "Ada"
    assert str(decoded["event_id"]) == dict(msg.headers())[HEADER_EVENT_ID].decode()
    async with db.unit_of_work().write() as conn:
        sent = (
            await conn.execute(text("SELECT sent_at FROM outbox WHERE key = :k"), {"k": user_id})
        ).scalar_one()
    assert sent is not None
