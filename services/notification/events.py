"""Decoded Avro records (shop.events.v1, as dicts from the registry serde) -> domain events.

The adapter between the wire schema and the domain: the core never sees Avro types.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.notification.domain import (
    Event,
    Money,
    OrderLine,
    OrderPlaced,
    OrderStatus,
    OrderStatusChanged,
    UndecodableEventError,
    UserRegistered,
    sum_money,
)


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(value) / 1000, UTC)


def _money(m: Mapping[str, Any]) -> Money:
    return Money(str(m["currency_code"]), int(m["units"]), int(m.get("nanos", 0)))


def _status(value: Any) -> OrderStatus:
    try:
        return OrderStatus(str(getattr(value, "value", value)))
    except ValueError:
        return OrderStatus.UNKNOWN  # a symbol newer than this consumer: no email for it


def to_domain(name: str, v: Mapping[str, Any]) -> Event | None:
    """The domain event for a record, or None for record types we do not act on."""
    try:
        match name:
            case "shop.events.v1.OrderPlaced":
                # `charge` (when set): the amounts in the shopper's currency, shipping included.
                charge = v.get("charge")
                prices = (
                    [_money(m) for m in charge["unit_prices"]]
                    if charge
                    else [_money(ln["unit_price"]) for ln in v["lines"]]
                )
                lines = tuple(
                    OrderLine(ln["product_name"], int(ln["quantity"]), price)
                    for ln, price in zip(v["lines"], prices, strict=True)
                )
                return OrderPlaced(
                    event_id=str(v["event_id"]),
                    occurred_at=_time(v["occurred_at"]),
                    order_id=v["order_id"],
                    user_id=v["user_id"],
                    lines=lines,
                    # The lines' total in the charged currency (as the order computes it).
                    total=sum_money([ln.line_total for ln in lines])
                    if charge
                    else _money(v["total"]),
                    shipping_city=v.get("shipping_city", ""),
                    shipping=_money(charge["shipping_cost"]) if charge else None,
                )
            case "shop.events.v1.OrderStatusChanged":
                return OrderStatusChanged(
                    event_id=str(v["event_id"]),
                    occurred_at=_time(v["occurred_at"]),
                    order_id=v["order_id"],
                    user_id=v["user_id"],
                    previous_status=_status(v["previous_status"]),
                    status=_status(v["status"]),
                    reason=v.get("reason"),
                )
            case "shop.events.v1.UserRegistered":
                return UserRegistered(
                    event_id=str(v["event_id"]),
                    occurred_at=_time(v["occurred_at"]),
                    user_id=v["user_id"],
                    email=v["email"],
                    display_name=v["display_name"],
                )
    except (KeyError, TypeError, ValueError) as exc:
        raise UndecodableEventError(f"{name}: malformed value ({type(exc).__name__})") from None
    return None
