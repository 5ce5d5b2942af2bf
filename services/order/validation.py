"""PlaceOrder's rules checked again at the core (defence in depth: unit tests and non-gRPC
callers get the same answers as the schema's buf.validate rules give). Stdlib and the order
domain only."""

from __future__ import annotations

import re

from services.order.domain import LineItem, PlaceOrder
from services.runtime.errors import FieldViolation, InvalidArgument

MAX_LINES = 50
MAX_QUANTITY = 100
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KEY = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def validate_place_order(cmd: PlaceOrder) -> tuple[LineItem, ...]:
    """Every rule the schema states, checked again at the core (defence in depth: unit tests
    and non-gRPC callers get the same answers). Returns the lines merged by product, since
    a reservation holds one line per product."""
    bad: list[FieldViolation] = []
    if not _ID.match(cmd.user_id):
        bad.append(FieldViolation("user_id", "must be 1-64 characters [A-Za-z0-9_-]"))
    if not _KEY.match(cmd.idempotency_key):
        bad.append(FieldViolation("idempotency_key", "must be 8-128 characters [A-Za-z0-9_.:-]"))
    if not cmd.lines:
        bad.append(FieldViolation("lines", "at least one line is required"))
    elif len(cmd.lines) > MAX_LINES:
        bad.append(FieldViolation("lines", f"at most {MAX_LINES} lines"))
    for i, line in enumerate(cmd.lines[: MAX_LINES + 1]):
        if not _ID.match(line.product_id):
            bad.append(FieldViolation(f"lines[{i}].product_id", "must be 1-64 [A-Za-z0-9_-]"))
        if not 1 <= line.quantity <= MAX_QUANTITY:
            bad.append(FieldViolation(f"lines[{i}].quantity", f"must be 1 to {MAX_QUANTITY}"))
    if cmd.currency_code and not _CURRENCY.match(cmd.currency_code):
        bad.append(FieldViolation("currency_code", "must be an ISO 4217 code, e.g. EUR"))
    if cmd.shipping_quote_id is not None and not _ID.match(cmd.shipping_quote_id):
        bad.append(FieldViolation("shipping_quote_id", "must be 1-64 characters [A-Za-z0-9_-]"))
    a = cmd.shipping_address
    if a is None:
        bad.append(FieldViolation("shipping_address", "is required"))
    else:
        for name in ("recipient_name", "line1", "city", "postal_code"):
            if not getattr(a, name).strip():
                bad.append(FieldViolation(f"shipping_address.{name}", "is required"))
        if not _COUNTRY.match(a.country_code):
            bad.append(FieldViolation("shipping_address.country_code", "must be ISO 3166 alpha-2"))
    if bad:
        raise InvalidArgument.many(bad)
    merged: dict[str, int] = {}
    for line in cmd.lines:
        merged[line.product_id] = merged.get(line.product_id, 0) + line.quantity
    return tuple(LineItem(p, q) for p, q in merged.items())
