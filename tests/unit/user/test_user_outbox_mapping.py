"""Outbox rows map to the Avro-generated event records."""

from __future__ import annotations

import uuid

import pytest

from services.user.outbox import to_record
from shop.events.v1 import UserRegistered


def test_user_registered_row_maps_to_generated_record():
    eid = uuid.uuid4()
    record = to_record(
        "shop.events.v1.UserRegistered",
        {
            "event_id": str(eid),
            "occurred_at": "2024-05-01T10:00:00+00:00",
            "user_id": "u-1",
            "email": "a@b.co",
            "display_name": "A",
        },
    )
    assert isinstance(record, UserRegistered)
    assert record.event_id == eid and record.user_id == "u-1"


def test_unknown_record_is_refused():
    with pytest.raises(ValueError):
        to_record("shop.events.v1.Nope", {})
