"""Helpers of the order integration tests: a tail of shop.orders.v1 that starts at the
current end (so a test sees only what it caused) and filters by order id, and a lock on one
of FerretDB's PostgreSQL tables that holds a relay at a chosen step."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
from aiokafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from services.runtime.kafka import AvroSerde, ConsumedEvent, EventConsumer, KafkaConfig
from shop.common.v1 import common_pb2
from shop.product.v1 import product_pb2
from shop.product.v1.product_grpc import ProductServiceStub
from shop.topology import ORDERS_TOPIC, TOPICS
from shop.user.v1 import user_pb2
from shop.user.v1.user_grpc import UserServiceStub

TOPIC = ORDERS_TOPIC


class TopicTail:
    def __init__(self, cfg: KafkaConfig, topic: str = TOPIC, partitions: int = 0) -> None:
        self.serde = AvroSerde(cfg.registry_url)
        # No group: partitions are assigned by hand and read from the end captured at start.
        self.consumer = EventConsumer(cfg, self.serde, [], group_id=None)
        self.topic = topic
        self.partitions = partitions  # 0: the platform topic's count (schemas/topology.yaml)
        self.seen: list[ConsumedEvent] = []

    async def __aenter__(self) -> TopicTail:
        await self.consumer.start()
        raw = self.consumer.raw
        parts = self.partitions or next(t.partitions for t in TOPICS if t.name == self.topic)
        tps = [TopicPartition(self.topic, p) for p in range(parts)]
        raw.assign(tps)
        await raw.seek_to_end(*tps)
        for tp in tps:
            await raw.position(tp)  # resolve the end now, before the test produces
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def collect(
        self, keep: Callable[[ConsumedEvent], bool], done: Callable[[list], bool], wait_s: float
    ) -> list[ConsumedEvent]:
        """Read until `done(kept events)` or `wait_s` passed; returns the kept events."""
        loop = asyncio.get_running_loop()
        end = loop.time() + wait_s
        while not done([e for e in self.seen if keep(e)]) and loop.time() < end:
            self.seen += await self.consumer.getmany(timeout_ms=300)
        return [e for e in self.seen if keep(e)]


@contextlib.asynccontextmanager
async def scratch_topic(cfg: KafkaConfig, partitions: int = 3) -> AsyncIterator[str]:
    """A private topic (and its auto-registered subjects, removed afterwards), for tests
    that publish many made-up events the platform's consumers must not see."""
    topic = f"test.orders.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": cfg.bootstrap_servers})
    await asyncio.to_thread(admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result, 20)
    try:
        yield topic
    finally:
        await asyncio.to_thread(admin.delete_topics([topic])[topic].result, 20)
        async with httpx.AsyncClient(base_url=cfg.registry_url, timeout=5) as http:
            for subject in (await http.get("/subjects")).json():
                if subject.startswith(f"{topic}-"):
                    await http.delete(f"/subjects/{subject}")
                    await http.delete(f"/subjects/{subject}", params={"permanent": "true"})


@contextlib.asynccontextmanager
async def ferretdb_table_locked(
    admin_dsn: str, database: str, collection: str, mode: str
) -> AsyncIterator[asyncpg.Connection]:
    """Hold PostgreSQL's table of a FerretDB collection in `mode` (EXCLUSIVE: reads go on,
    writes wait; ACCESS EXCLUSIVE: everything waits) until the block ends. Yields the
    holding connection, for `waiting_on_lock`. `admin_dsn`: the ferretdb database's."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        table = await conn.fetchval(
            f"SELECT _jsonb->>'table' FROM \"{database}\"._ferretdb_database_metadata "
            "WHERE _jsonb->>'_id' = $1",
            collection,
        )
        async with conn.transaction():
            await conn.execute(f'LOCK TABLE "{database}"."{table}" IN {mode} MODE')
            yield conn
    finally:
        await conn.close()


async def waiting_on_lock(conn: asyncpg.Connection, verb: str) -> list[int]:
    """Backends of the ferretdb database waiting for a lock in a `verb` (SELECT, DELETE)."""
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = 'ferretdb' "
        "AND wait_event_type = 'Lock' AND query ILIKE $1",
        f"{verb}%",
    )
    return [r["pid"] for r in rows]


SHIPPING = common_pb2.Address(
    recipient_name="Ada", line1="1 Main St", city="Lyon", postal_code="69001", country_code="FR"
)


async def buyer_and_product(
    users: UserServiceStub, products: ProductServiceStub, prefix: str, stock: int
) -> tuple[user_pb2.User, product_pb2.Product]:
    """A new registered user and a new $2 product with `stock` units, tagged `prefix`."""
    tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
    user = (
        await users.RegisterUser(
            user_pb2.RegisterUserRequest(
                email=f"{tag}@example.com", password="correct horse", display_name="Ada"
            )
        )
    ).user
    product = (
        await products.CreateProduct(
            product_pb2.CreateProductRequest(
                sku=tag.upper(), name="Thing", category="test",
                price=common_pb2.Money(currency_code="USD", units=2), stock=stock,
            )
        )
    ).product  # fmt: skip
    return user, product
