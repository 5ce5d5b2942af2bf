"""Decoded Avro records (shop.events.v1 dicts from the registry serde) -> domain events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.recommendation.domain import OrderPlaced
from services.runtime.kafka.pipeline import PoisonRecordError

ORDER_PLACED = "shop.events.v1.OrderPlaced"


class MalformedEventError(PoisonRecordError, ValueError):
    """A record of a known type without the fields the schema promises: never retried
    (the runtime pipeline dead-letters it)."""


def order_placed(name: str, v: Mapping[str, Any]) -> OrderPlaced | None:
    """The OrderPlaced event of a record, or None for the types recommendations ignore."""
    if name != ORDER_PLACED:
        return None
    try:
        return OrderPlaced(
            event_id=str(v["event_id"]),
            order_id=str(v["order_id"]),
            product_ids=frozenset(str(ln["product_id"]) for ln in v["lines"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedEventError(f"{name}: {type(exc).__name__}: {exc}") from None
