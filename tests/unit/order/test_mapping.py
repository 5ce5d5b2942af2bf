"""Order documents (services/order/repository/mapping.py): what is stored reads back as the
same order, in today's layout (`body`) and in the one before it (every field at the top)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from services.order.domain import Address, LineItem, Money, Order, OrderLine, PlaceOrder
from services.order.repository.mapping import BODY, from_doc, to_doc

NOW = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)


def confirmed() -> Order:
    address = Address("Ada", "1 Main St", "Lyon", "69001", "FR", line2="Flat 2", region="ARA")
    cmd = PlaceOrder("u-1", "key-00000001", (LineItem("p-1", 2), LineItem("p-2", 1)), address)
    order = Order.start("o-1", cmd, cmd.lines, NOW)
    order.confirm(
        [
            OrderLine("p-1", "Mug", 2, Money("USD", 3, 500_000_000)),
            OrderLine("p-2", "Tea", 1, Money("USD", 4, 0)),
        ],
        NOW,
        None,
    )
    order.events = []
    order.version = 1
    return order


def test_an_order_reads_back_as_stored() -> None:
    order = confirmed()
    doc = to_doc(order)
    assert not set(BODY) & set(doc)  # kept in the one string field
    assert [(i["product_id"], i["quantity"]) for i in doc["items"]] == [("p-1", 2), ("p-2", 1)]
    assert from_doc(doc) == order


def test_a_document_from_before_body_still_reads() -> None:
    order = dataclasses.replace(confirmed(), cancel_reason="late")
    doc = to_doc(order)
    old = {k: v for k, v in doc.items() if k != "body"} | json.loads(doc["body"])
    assert from_doc(old) == order
