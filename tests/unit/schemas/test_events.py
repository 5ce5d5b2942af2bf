"""The Avro event schemas follow the event conventions, and the generated event types
round-trip through real Avro binary encoding with the exact schema text producers use."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from pathlib import Path

import fastavro
import pytest

from shop.events import v1 as events

ROOT = Path(__file__).resolve().parents[3]
AVSC = sorted((ROOT / "schemas" / "avro").rglob("*.avsc"))


@pytest.mark.parametrize("path", AVSC, ids=lambda p: p.stem)
def test_event_schema_conventions(path: Path) -> None:
    schema = json.loads(path.read_text())
    assert schema["namespace"] == "shop.events.v1"
    assert schema["doc"], "every event documents its topic, key and headers"
    fields = {f["name"]: f for f in schema["fields"]}
    assert fields["event_id"]["type"] == {"type": "string", "logicalType": "uuid"}
    assert fields["occurred_at"]["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    fastavro.parse_schema(schema)


def test_topics_name_every_schema_once() -> None:
    named = [name for names in events.TOPICS.values() for name in names]
    assert sorted(named) == sorted(events.SCHEMAS)
    assert set(events.TOPICS) == {"shop.orders.v1", "shop.users.v1"}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=123000)


SAMPLES = [
    events.OrderPlaced(
        event_id=uuid.uuid4(),
        occurred_at=_now(),
        order_id="o-1",
        user_id="u-1",
        lines=[
            events.OrderLine(
                product_id="p-0001",
                product_name="Mug",
                quantity=2,
                unit_price=events.Money(currency_code="USD", units=9, nanos=990000000),
            )
        ],
        total=events.Money(currency_code="USD", units=19, nanos=980000000),
        shipping_city="Berlin",
        shipping_country_code="DE",
    ),
    events.OrderStatusChanged(
        event_id=uuid.uuid4(),
        occurred_at=_now(),
        order_id="o-1",
        user_id="u-1",
        previous_status=events.OrderStatus.CONFIRMED,
        status=events.OrderStatus.CANCELLED,
        reason="changed my mind",
    ),
    events.UserRegistered(
        event_id=uuid.uuid4(),
        occurred_at=_now(),
        user_id="u-1",
        email="a@example.com",
        display_name="Ada",
    ),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_event_round_trips_through_avro_binary(event) -> None:
    schema = fastavro.parse_schema(
        json.loads(events.SCHEMAS[f"shop.events.v1.{type(event).__name__}"])
    )
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, event.to_dict())
    buf.seek(0)
    decoded = fastavro.schemaless_reader(buf, schema)
    assert type(event).parse_obj(decoded) == event
