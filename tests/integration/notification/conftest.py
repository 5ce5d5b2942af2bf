"""Notification against real Kafka, registry, PostgreSQL and the SMTP sink.

Each test gets private topics (`nt.<hex>.orders` / `.users` with their retry and dead-letter
topics), its own consumer group and short retry delays, so it never competes with the
running notification service for the shared topics. Event ids are unique per test, and
mail is read from the sink's mail dir, only files written after the test started
(sink_reader.py); real_orders.py places real orders. Both are re-exported here for the test
modules that import them from conftest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from confluent_kafka.admin import AdminClient, NewTopic
from grpclib.client import Channel

from services.notification.bootstrap import NotificationApp
from services.notification.config import NotificationConfig
from services.runtime.auth import ServiceIdentity, register_process_identity
from services.runtime.kafka import AvroSerde, EventProducer, KafkaConfig
from services.runtime.metrics import Metrics
from shop.events import v1 as events
from shop.topology import SERVICES
from shop.user.v1 import user_grpc, user_pb2
from stack.model import state_dir
from tests.integration.notification.real_orders import SHIP_TO as SHIP_TO
from tests.integration.notification.real_orders import place_real_order as place_real_order
from tests.integration.notification.sink_reader import Mail as Mail
from tests.integration.notification.sink_reader import mail_for as mail_for
from tests.integration.notification.sink_reader import sink_mail as sink_mail

pytestmark = pytest.mark.stack

REGISTRY = "http://127.0.0.1:8085"
RETRY_DELAYS = "0.3,0.6"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def eventually(check: Callable[[], object], within: float = 30, every: float = 0.2):
    """Poll until `check()` is truthy (sync or async); return its value or fail."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(every)


# ---------------------------------------------------------------- topics and events


@dataclass
class Topics:
    orders: str
    users: str

    @property
    def bases(self) -> tuple[str, str]:
        return (self.orders, self.users)

    def env(self) -> dict[str, str]:
        return {"NOTIFICATION_TOPICS": f"{self.orders},{self.users}"}


@pytest.fixture(scope="module")
def infra(stack):
    return stack.require("postgres", "kafka", "registry", "smtp-sink")


@pytest.fixture
def topics(infra) -> Topics:
    prefix = f"nt.{uuid.uuid4().hex[:10]}"
    t = Topics(f"{prefix}.orders", f"{prefix}.users")
    names = [n for b in t.bases for n in (b, f"{b}.retry.1", f"{b}.retry.2", f"{b}.dlq")]
    admin = AdminClient({"bootstrap.servers": infra.kafka_bootstrap})
    for fut in admin.create_topics([NewTopic(n, 2, 1) for n in names]).values():
        fut.result(timeout=20)
    yield t
    for fut in admin.delete_topics(names).values():
        fut.exception(timeout=20)
    # Subjects the test registered under its private topics; best effort.
    with httpx.Client(base_url=REGISTRY, timeout=5) as http:
        for subject in http.get("/subjects").json():
            if subject.startswith(prefix):
                http.delete(f"/subjects/{subject}")
                http.delete(f"/subjects/{subject}", params={"permanent": "true"})


class Events:
    """Produces our Avro events with the runtime serde (registering under private topics)."""

    def __init__(self, producer: EventProducer, topics: Topics) -> None:
        self.producer = producer
        self.topics = topics

    async def user_registered(
        self, user_id: str, address: str, name: str = "Tess", event_id: uuid.UUID | None = None
    ) -> str:
        eid = event_id or uuid.uuid4()
        rec = events.UserRegistered(
            event_id=eid,
            occurred_at=datetime.now(UTC),
            user_id=user_id,
            email=address,
            display_name=name,
        )
        await self.producer.publish(self.topics.users, rec, key=user_id, event_id=str(eid))
        return str(eid)

    def order_placed_record(
        self, order_id: str, user_id: str, units: int, nanos: int
    ) -> events.OrderPlaced:
        price = events.Money(currency_code="USD", units=units, nanos=nanos)
        return events.OrderPlaced(
            event_id=uuid.uuid4(),
            occurred_at=datetime.now(UTC),
            order_id=order_id,
            user_id=user_id,
            lines=[events.OrderLine("p-1", "Blue mug", 1, price)],
            total=price,
            shipping_city="Bergen",
        )

    async def order_placed(self, order_id: str, user_id: str, units: int = 12, nanos: int = 0):
        rec = self.order_placed_record(order_id, user_id, units, nanos)
        await self.publish_order(rec)
        return str(rec.event_id)

    async def publish_order(self, rec: events.OrderPlaced) -> None:
        await self.producer.publish(
            self.topics.orders, rec, key=rec.order_id, event_id=str(rec.event_id)
        )

    async def raw(self, topic: str, value: bytes, event_id: str) -> None:
        ack = await self.producer.send_raw(
            topic, value, key=b"poison", headers=[("event_id", event_id.encode())]
        )
        await ack


@pytest.fixture
async def produce(infra, topics) -> AsyncIterator[Events]:
    cfg = KafkaConfig(bootstrap_servers=infra.kafka_bootstrap, registry_url=REGISTRY)
    async with EventProducer(cfg, AvroSerde(REGISTRY, auto_register=True)) as producer:
        yield Events(producer, topics)


# ---------------------------------------------------------------- the user directory


@dataclass
class Users:
    address: str
    add: Callable[[str, str], Awaitable[str]]  # (email, name) -> user id


@pytest.fixture(scope="module")
async def users(stack) -> AsyncIterator[Users]:
    """The stack's user service: registers the buyers the tests mail."""
    stack.require("user")
    user = SERVICES["user"]
    channel = Channel("127.0.0.1", user.port)
    stub = user_grpc.UserServiceStub(channel)

    async def register(address: str, name: str) -> str:
        reply = await stub.RegisterUser(
            user_pb2.RegisterUserRequest(email=address, password="s3cret-pass!", display_name=name)
        )
        return reply.user.id

    yield Users(user.local_addr, register)
    channel.close()


# ---------------------------------------------------------------- the service under test


def service_env(topics: Topics, users: Users, group: str, **extra: str) -> dict[str, str]:
    return {
        **topics.env(),
        "NOTIFICATION_GROUP_ID": group,
        "NOTIFICATION_RETRY_DELAYS_S": RETRY_DELAYS,
        "NOTIFICATION_USER_ADDR": users.address,
        "NOTIFICATION_SESSION_TIMEOUT_MS": "6000",
        "NOTIFICATION_GRPC_PORT": "0",
        "NOTIFICATION_METRICS_PORT": "0",
        "NOTIFICATION_SMTP_TIMEOUT_S": "3",
        **extra,
    }


@pytest.fixture(autouse=True)
def notification_identity() -> None:
    """The service in this process calls user and order as notification, its own identity,
    which serve() would have registered."""
    register_process_identity(ServiceIdentity.from_env("notification"))


@pytest.fixture
async def service(topics, users) -> AsyncIterator[NotificationApp]:
    """The service's consumers in this process, private topics and group; started."""
    env = {**os.environ, **service_env(topics, users, f"nt-{uuid.uuid4().hex[:8]}")}
    app = NotificationApp(NotificationConfig.from_env(env), Metrics("notification-test"))
    await app.open()
    task = asyncio.create_task(app.consume())
    await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in app.workers)), 30)
    yield app
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await app.close()


@pytest.fixture
def since_ns() -> int:
    return time.time_ns()


def mail_dir() -> Path:
    return state_dir() / "mail"


@contextlib.asynccontextmanager
async def running_app(
    topics: Topics, users: Users, group: str | None = None, **extra: str
) -> AsyncIterator[NotificationApp]:
    """The service's consumers in this process (private topics; own group unless `group`
    names one to resume), started; `extra` overrides NOTIFICATION_* settings."""
    env = {
        **os.environ,
        **service_env(topics, users, group or f"nt-{uuid.uuid4().hex[:8]}", **extra),
    }
    app = NotificationApp(NotificationConfig.from_env(env), Metrics("notification-test"))
    await app.open()
    task = asyncio.create_task(app.consume())
    try:
        yield app
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await app.close()


def sample(app: NotificationApp, name: str, **labels: str) -> float | None:
    """One sample of the service's own metrics; None while it has never been set."""
    return app.metrics.registry.get_sample_value(name, labels)


async def read_topic(
    bootstrap: str, topic: str, done: Callable[[list], bool], within: float = 30
) -> list:
    """Records of `topic` from the beginning (no group) until `done(records)`, or fail."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    out: list = []
    try:
        async with asyncio.timeout(within):
            while not done(out):
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    out.extend(records)
    finally:
        await consumer.stop()
    return out


def event_id_of(record: ConsumerRecord) -> str:
    return dict(record.headers).get("event_id", b"").decode()


async def cli_replay(topics, users, *args: str) -> dict[str, int]:
    """`python -m services.notification replay ARGS` against these topics; its JSON answer."""
    env = {**os.environ, **service_env(topics, users, "unused")}
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "services.notification", "replay", *args),
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0
    return json.loads(stdout)
