"""services.runtime.kafka against real Kafka and our schema registry: wire format, subjects,
headers, ordering by key, and interop with confluent-kafka's own AvroDeserializer."""

from __future__ import annotations

import contextlib
import datetime as dt
import urllib.request
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from services.runtime.kafka import (
    AvroSerde,
    EventConsumer,
    EventProducer,
    KafkaConfig,
    TraceContext,
)
from shop.events.v1 import Money, OrderLine, OrderPlaced, OrderStatus, OrderStatusChanged

pytestmark = pytest.mark.stack

REGISTRY = "http://127.0.0.1:8085"


@pytest.fixture(scope="module")
def kafka_cfg(stack) -> KafkaConfig:
    stack.require("kafka", "registry")
    return KafkaConfig(bootstrap_servers=stack.kafka_bootstrap, registry_url=REGISTRY)


@pytest.fixture
def scratch_topic(kafka_cfg):
    """A private topic (never read by real consumers); its subjects are deleted afterwards."""
    admin = AdminClient({"bootstrap.servers": kafka_cfg.bootstrap_servers})
    name = f"test.runtime-kafka.{uuid.uuid4().hex[:10]}"
    admin.create_topics([NewTopic(name, 2, 1)])[name].result(timeout=20)
    yield name
    admin.delete_topics([name])[name].result(timeout=20)
    for rec in ("OrderPlaced", "OrderStatusChanged"):
        for suffix in ("", "?permanent=true"):
            req = urllib.request.Request(
                f"{REGISTRY}/subjects/{name}-shop.events.v1.{rec}{suffix}", method="DELETE"
            )
            with contextlib.suppress(Exception):  # not registered, or already gone
                urllib.request.urlopen(req, timeout=5).close()


def _placed(order_id: str) -> OrderPlaced:
    price = Money(currency_code="USD", units=12, nanos=500_000_000)
    return OrderPlaced(
        event_id=uuid.uuid4(),
        occurred_at=dt.datetime.now(dt.UTC),
        order_id=order_id,
        user_id="u-1",
        lines=[OrderLine(product_id="p-1", product_name="Mug", quantity=2, unit_price=price)],
        total=Money(currency_code="USD", units=25, nanos=0),
        shipping_city="Lyon",
        shipping_country_code="FR",
    )


async def test_round_trip_headers_subjects_and_order(kafka_cfg, scratch_topic):
    serde = AvroSerde(REGISTRY, auto_register=True)
    trace = TraceContext("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "k=v")
    placed = _placed("o-1")
    changed = OrderStatusChanged(
        event_id=uuid.uuid4(),
        occurred_at=dt.datetime.now(dt.UTC),
        order_id="o-1",
        user_id="u-1",
        previous_status=OrderStatus.CONFIRMED,
        status=OrderStatus.PAID,
    )
    async with EventProducer(kafka_cfg, serde) as producer:
        m1 = await producer.publish(
            scratch_topic, placed, key="o-1", event_id=str(placed.event_id), trace=trace
        )
        m2 = await producer.publish(
            scratch_topic, changed, key="o-1", event_id=str(changed.event_id)
        )
    assert m1.partition == m2.partition and m2.offset > m1.offset  # same key, same order

    subjects = SchemaRegistryClient({"url": REGISTRY}).get_subjects()
    assert f"{scratch_topic}-shop.events.v1.OrderPlaced" in subjects
    assert f"{scratch_topic}-shop.events.v1.OrderStatusChanged" in subjects

    got = []
    async with EventConsumer(
        kafka_cfg, serde, [scratch_topic], group_id=f"t-{uuid.uuid4().hex}"
    ) as consumer:
        for _ in range(20):
            got += await consumer.getmany(timeout_ms=500)
            if len(got) >= 2:
                break
        await consumer.commit()
    assert [e.name for e in got] == [
        "shop.events.v1.OrderPlaced",
        "shop.events.v1.OrderStatusChanged",
    ]
    first, second = got
    assert first.error is None and first.key == "o-1"
    assert first.event_id == str(placed.event_id)
    assert first.trace == trace
    assert second.trace is None
    assert first.headers["event_type"] == b"shop.events.v1.OrderPlaced"
    assert serde.model(first.name, first.value) == placed.__class__.parse_obj(
        {**placed.to_dict(), "occurred_at": first.value["occurred_at"]}
    )
    assert serde.model(second.name, second.value).status == OrderStatus.PAID

    # Interop: confluent-kafka's own deserializer reads the bytes we wrote.
    plain = AvroDeserializer(SchemaRegistryClient({"url": REGISTRY}))
    value = plain(first.raw, SerializationContext(scratch_topic, MessageField.VALUE))
    assert value["order_id"] == "o-1" and value["lines"][0]["unit_price"]["units"] == 12


async def test_unregistered_subject_is_refused_without_auto_register(kafka_cfg, scratch_topic):
    """Production producers only look schema ids up: an unregistered subject never gets
    written, so schemas reach topics only through the registry's compatibility checks."""
    serde = AvroSerde(REGISTRY, auto_register=False)
    with pytest.raises(Exception, match=r"(?i)not found|40401|40403"):
        await serde.encode(scratch_topic, _placed("o-2"))


async def test_poison_record_is_surfaced_not_raised(kafka_cfg, scratch_topic):
    serde = AvroSerde(REGISTRY)
    async with EventProducer(kafka_cfg, serde) as producer:
        await (await producer.send_raw(scratch_topic, b"not avro", key=b"k"))
    async with EventConsumer(
        kafka_cfg, serde, [scratch_topic], group_id=f"t-{uuid.uuid4().hex}"
    ) as consumer:
        got = []
        for _ in range(20):
            got += await consumer.getmany(timeout_ms=500)
            if got:
                break
    assert len(got) == 1 and got[0].error is not None and got[0].raw == b"not avro"
