"""Unmodified confluent-kafka serde against our registry, through the stack's real Kafka."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from registry.catalog import load_dir
from tests.integration.registry.conftest import RegistryProcess

pytestmark = pytest.mark.stack
SCHEMAS = Path(__file__).resolve().parents[3] / "schemas" / "avro"


def order_placed() -> dict:
    money = {"currency_code": "EUR", "units": 12, "nanos": 500_000_000}
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": dt.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
        "order_id": "o-1",
        "user_id": "u-1",
        "lines": [{"product_id": "p-1", "product_name": "Mug", "quantity": 1, "unit_price": money}],
        "total": money,
        "shipping_city": "Lyon",
        "shipping_country_code": "FR",
    }


def test_order_placed_round_trips_through_registry_and_kafka(
    stack, registry_server: RegistryProcess
) -> None:
    stack.require("kafka")
    by_record = {s.record: s for s in load_dir(SCHEMAS)}
    schema = by_record["shop.events.v1.OrderPlaced"].schema
    topic = f"test.registry.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    try:
        client = SchemaRegistryClient({"url": registry_server.url})
        serializer = AvroSerializer(
            client, schema, conf={"subject.name.strategy": topic_record_subject_name_strategy}
        )
        event = order_placed()
        ctx = SerializationContext(topic, MessageField.VALUE)
        payload = serializer(event, ctx)
        assert payload is not None and payload[0] == 0  # Confluent wire format magic byte
        subject = f"{topic}-shop.events.v1.OrderPlaced"
        registered = client.get_latest_version(subject)
        assert int.from_bytes(payload[1:5], "big") == registered.schema_id

        producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
        producer.produce(topic, key=b"o-1", value=payload)
        assert producer.flush(30) == 0

        consumer = Consumer(
            {
                "bootstrap.servers": stack.kafka_bootstrap,
                "group.id": f"g-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([topic])
        try:
            msg = None
            for _ in range(60):
                msg = consumer.poll(1.0)
                if msg is not None and not msg.error():
                    break
            assert msg is not None and not msg.error(), msg and msg.error()
        finally:
            consumer.close()
        # A fresh client: the deserializer must fetch the writer schema by id from the server.
        fresh = SchemaRegistryClient({"url": registry_server.url})
        decoded = AvroDeserializer(fresh)(msg.value(), ctx)
        assert decoded["order_id"] == "o-1" and decoded["total"] == event["total"]
        assert decoded["lines"][0]["unit_price"]["nanos"] == 500_000_000
        assert decoded["occurred_at"] == event["occurred_at"]
        assert str(decoded["event_id"]) == event["event_id"]
    finally:
        admin.delete_topics([topic])


def test_client_api_calls_match_server(registry_server: RegistryProcess) -> None:
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    client = SchemaRegistryClient({"url": registry_server.url})
    subject = f"client-{uuid.uuid4().hex[:8]}"
    v1 = Schema(by_name("shop.events.v1.UserRegistered"), "AVRO")
    sid = client.register_schema(subject, v1)
    assert client.lookup_schema(subject, v1).schema_id == sid
    assert client.get_versions(subject) == [1]
    assert client.get_schema(sid).schema_str
    assert client.get_compatibility() == "BACKWARD"
    client.set_compatibility(subject, "FULL")
    assert client.get_compatibility(subject) == "FULL"
    assert client.test_compatibility(subject, v1) is True
    assert [v.subject for v in client.get_schema_versions(sid)] == [subject]
    assert client.delete_subject(subject) == [1]
    assert client.delete_subject(subject, permanent=True) == [1]
    with pytest.raises(SchemaRegistryError) as exc:
        client.get_latest_version(subject)
    assert exc.value.error_code == 40401


def by_name(record: str) -> str:
    return {s.record: s for s in load_dir(SCHEMAS)}[record].schema
