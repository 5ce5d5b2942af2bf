"""Order documents <-> domain objects, and the outbox entry of an event (the Avro record's
fields plus what the relay puts in headers). Pure mapping: no I/O."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from services.order.domain import (
    Address,
    Charge,
    Event,
    LineItem,
    Money,
    Order,
    OrderLine,
    OrderPlaced,
    OrderStatus,
)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _money(m: Money | None) -> dict[str, Any] | None:
    return (
        None
        if m is None
        else {"currency_code": m.currency_code, "units": m.units, "nanos": m.nanos}
    )


def _to_money(d: dict[str, Any] | None) -> Money | None:
    return None if d is None else Money(d["currency_code"], int(d["units"]), int(d["nanos"]))


def _line(line: OrderLine) -> dict[str, Any]:
    return {
        "product_id": line.product_id,
        "product_name": line.product_name,
        "quantity": line.quantity,
        "unit_price": _money(line.unit_price),
    }


def _stored_line(line: OrderLine) -> dict[str, Any]:
    doc = _line(line)
    if line.converted_unit_price is not None:
        doc["converted_unit_price"] = _money(line.converted_unit_price)
    return doc


def _charge(c: Charge) -> dict[str, Any]:
    return {
        "currency_code": c.currency_code,
        "rate_version": c.rate_version,
        "unit_prices": [_money(m) for m in c.unit_prices],
        "shipping_quote_id": c.shipping_quote_id,
        "shipping_cost": _money(c.shipping_cost),
        "grand_total": _money(c.grand_total),
    }


def event_to_doc(event: Event) -> dict[str, Any]:
    """An outbox entry: the Avro record's fields (as shop.events.v1 names them) plus the
    record name and trace context the relay puts in headers."""
    if isinstance(event, OrderPlaced):
        name = "shop.events.v1.OrderPlaced"
        data: dict[str, Any] = {
            "lines": [_line(line) for line in event.lines],
            "total": _money(event.total),
            "shipping_city": event.shipping_city,
            "shipping_country_code": event.shipping_country_code,
            "charge": None if event.charge is None else _charge(event.charge),
        }
    else:
        name = "shop.events.v1.OrderStatusChanged"
        data = {
            "previous_status": event.previous_status.value,
            "status": event.status.value,
            "reason": event.reason,
        }
    data |= {
        "event_id": event.event_id,
        "occurred_at": event.occurred_at,
        "order_id": event.order_id,
        "user_id": event.user_id,
    }
    trace = event.trace
    return {
        "id": event.event_id,
        "type": name,
        "occurred_at": event.occurred_at,
        "traceparent": trace.traceparent if trace else "",
        "tracestate": trace.tracestate if trace else "",
        "data": data,
    }


# Kept in one JSON string (`body`): what no query filters or sorts on. FerretDB v1 spends its
# CPU on (de)coding nested documents (an order with these as fields: ~350 us per read);
# `items` stays a field (the reliability suite reads it from the documents).
BODY = ("request_hash", "lines", "total", "shipping_address", "cancel_reason")


def _state(order: Order) -> dict[str, Any]:
    a = order.shipping_address
    body = {
        "request_hash": order.request_hash,
        "lines": [_stored_line(line) for line in order.lines],
        "total": _money(order.total),
        "shipping_address": {
            "recipient_name": a.recipient_name,
            "line1": a.line1,
            "line2": a.line2,
            "city": a.city,
            "region": a.region,
            "postal_code": a.postal_code,
            "country_code": a.country_code,
        },
        "cancel_reason": order.cancel_reason,
    }
    if order.requested_currency or order.requested_quote_id is not None or order.currency_code:
        body["pricing"] = {
            "requested_currency": order.requested_currency,
            "requested_quote_id": order.requested_quote_id,
            "currency_code": order.currency_code,
            "rate_version": order.rate_version,
            "shipping_quote_id": order.shipping_quote_id,
            "shipping_cost": _money(order.shipping_cost),
        }
    return {
        "user_id": order.user_id,
        "idempotency_key": order.idempotency_key,
        "status": order.status.value,
        "items": [{"product_id": i.product_id, "quantity": i.quantity} for i in order.items],
        "body": json.dumps(body, separators=(",", ":")),
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "release_pending": order.release_pending,
    }


def to_doc(order: Order) -> dict[str, Any]:
    """The stored document of `order`, without outbox and lock bookkeeping."""
    return {"_id": order.id, **_state(order), "version": order.version}


def from_doc(doc: dict[str, Any]) -> Order:
    """Documents written before `body` hold its fields at the top level."""
    body = json.loads(doc["body"]) if "body" in doc else doc
    pricing = body.get("pricing") or {}
    return Order(
        id=doc["_id"],
        user_id=doc["user_id"],
        idempotency_key=doc["idempotency_key"],
        request_hash=body.get("request_hash", ""),
        status=OrderStatus(doc["status"]),
        items=tuple(LineItem(i["product_id"], int(i["quantity"])) for i in doc.get("items", ())),
        shipping_address=Address(**body["shipping_address"]),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        lines=tuple(
            OrderLine(
                line["product_id"],
                line["product_name"],
                int(line["quantity"]),
                _to_money(line["unit_price"]),  # type: ignore[arg-type]
                _to_money(line.get("converted_unit_price")),
            )
            for line in body.get("lines", ())
        ),
        total=_to_money(body.get("total")),
        cancel_reason=body.get("cancel_reason", ""),
        requested_currency=pricing.get("requested_currency", ""),
        requested_quote_id=pricing.get("requested_quote_id"),
        currency_code=pricing.get("currency_code", ""),
        rate_version=int(pricing.get("rate_version", 0)),
        shipping_quote_id=pricing.get("shipping_quote_id", ""),
        shipping_cost=_to_money(pricing.get("shipping_cost")),
        release_pending=bool(doc.get("release_pending")),
        version=int(doc.get("version", 0)),
    )


def pack_entry(entry: dict[str, Any]) -> str:
    """An outbox entry as stored in a claim: one JSON string, not nested fields. FerretDB v1
    spends its CPU on (de)coding nested documents: a claim with the entry as fields cost
    340-370 us of FerretDB CPU per document read, one with a string ~40 us."""
    return json.dumps(entry, separators=(",", ":"), default=_iso)


def unpack_entry(packed: str | dict[str, Any]) -> dict[str, Any]:
    """The entry back, with its `occurred_at` times as datetimes (the Avro timestamps)."""
    if isinstance(packed, dict):  # legacy: an entry stored as fields
        return packed
    entry = json.loads(packed)
    entry["occurred_at"] = dt.datetime.fromisoformat(entry["occurred_at"])
    entry["data"]["occurred_at"] = dt.datetime.fromisoformat(entry["data"]["occurred_at"])
    return entry


def _iso(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")
