"""Kafka 4.3.1 (KRaft) started by the stack runner: declared topics and round trips."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from shop.topology import TOPICS

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def kafka(stack):
    return stack.require("kafka")


@pytest.fixture
def scratch_topic(kafka):
    """A throwaway topic, so test bytes never reach the consumers of real topics."""
    admin = AdminClient({"bootstrap.servers": kafka.kafka_bootstrap})
    name = f"stack-test.{uuid.uuid4().hex[:12]}"
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=20)
    yield name
    admin.delete_topics([name])[name].result(timeout=20)


def test_declared_topics_exist_with_partitions_and_retention(kafka):
    admin = AdminClient({"bootstrap.servers": kafka.kafka_bootstrap})
    meta = admin.list_topics(timeout=10).topics
    for t in TOPICS:
        assert t.name in meta, t.name
        assert len(meta[t.name].partitions) == t.partitions, t.name
    from confluent_kafka.admin import ConfigResource

    res = ConfigResource(ConfigResource.Type.TOPIC, "shop.orders.v1.dlq")
    cfg = admin.describe_configs([res])[res].result(timeout=10)
    assert cfg["retention.ms"].value == str(30 * 24 * 3600 * 1000)


async def test_aiokafka_round_trip(kafka, scratch_topic):
    producer = AIOKafkaProducer(bootstrap_servers=kafka.kafka_bootstrap, acks="all")
    await producer.start()
    payload = uuid.uuid4().bytes
    try:
        await producer.send_and_wait(scratch_topic, payload, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        scratch_topic,
        bootstrap_servers=kafka.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"stack-test-{uuid.uuid4().hex[:8]}",
    )
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), 20)
    finally:
        await consumer.stop()
    assert (msg.key, msg.value) == (b"k", payload)


def test_confluent_kafka_round_trip(kafka, scratch_topic):
    producer = Producer({"bootstrap.servers": kafka.kafka_bootstrap, "acks": "all"})
    payload = uuid.uuid4().bytes
    delivered = []
    producer.produce(scratch_topic, payload, key=b"k", on_delivery=lambda e, m: delivered.append(e))
    producer.flush(20)
    assert delivered == [None]
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.kafka_bootstrap,
            "group.id": f"stack-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([scratch_topic])
    try:
        msg = None
        for _ in range(40):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                break
    finally:
        consumer.close()
    assert msg is not None and msg.error() is None
    assert (msg.key(), msg.value()) == (b"k", payload)
