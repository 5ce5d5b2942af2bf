"""One placed order, seen by the operators: the stack's Prometheus counts the PlaceOrder RPC
and the notification service's consumed event, and the order's trace id (sent by the client
as W3C traceparent) is the same in the order service's log, the OrderPlaced record's Kafka
headers and the notification service's log line for the email."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid

import httpx
import pytest
from confluent_kafka import Consumer

from shop.order.v1 import order_pb2 as opb
from stack.model import state_dir
from tests.reliability.harness import ADDRESS, Stubs, create_product, eventually, register

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

PROMETHEUS = "http://127.0.0.1:9090"


def _log_lines_with(service: str, trace_id: str) -> list[dict]:
    path = state_dir() / "logs" / f"{service}.log"
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if trace_id in line and line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def _kafka_traceparent(bootstrap: str, order_id: str, within: float) -> str | None:
    """The traceparent header of the OrderPlaced record keyed by `order_id`."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"obs-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(["shop.orders.v1"])
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() or msg.key() != order_id.encode():
                continue
            headers = dict(msg.headers() or [])
            if headers.get("event_type", b"").endswith(b"OrderPlaced"):
                return headers.get("traceparent", b"").decode()
        return None
    finally:
        consumer.close()


async def _prometheus_value(query: str) -> float:
    async with httpx.AsyncClient(base_url=PROMETHEUS, timeout=5) as client:
        result = (await client.get("/api/v1/query", params={"query": query})).json()
    series = result["data"]["result"]
    return float(series[0]["value"][1]) if series else 0.0


async def test_placed_order_is_counted_and_traced_end_to_end(stack) -> None:
    stack.require("order", "notification", "auth", "smtp-sink", "prometheus")
    admin, user_stubs = Stubs(service_token=True), Stubs()
    try:
        product = await create_product(admin, f"obs{uuid.uuid4().hex[:6]}", 5)
        buyer = await register(user_stubs, "obs")
        trace_id = secrets.token_hex(16)
        metadata = {
            **(await buyer.metadata(user_stubs.auth)),
            "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
        }
        order = (
            await user_stubs.order.PlaceOrder(
                opb.PlaceOrderRequest(
                    idempotency_key=f"obs-{uuid.uuid4().hex}",
                    user_id=buyer.user_id,
                    lines=[opb.LineItem(product_id=product.id, quantity=1)],
                    shipping_address=ADDRESS,
                ),
                metadata=metadata,
                timeout=30,
            )
        ).order
        assert order.status == opb.ORDER_STATUS_CONFIRMED

        # The order service logged the call under the client's trace id.
        calls = [
            e for e in _log_lines_with("order", trace_id) if "PlaceOrder" in e.get("method", "")
        ]
        assert calls and calls[0]["trace_id"] == trace_id

        # The relay published OrderPlaced carrying the same trace.
        tp = await asyncio.to_thread(_kafka_traceparent, stack.kafka_bootstrap, order.id, 60.0)
        assert tp, f"no OrderPlaced for {order.id} on shop.orders.v1"
        assert tp.split("-")[1] == trace_id

        # The notification service sent the email inside that trace.
        async def emailed() -> bool:
            lines = _log_lines_with("notification", trace_id)
            return any(e.get("msg") == "email sent" for e in lines)

        assert await eventually(emailed, within=60.0, every=1.0), "no 'email sent' in the trace"

        # Prometheus scraped both services' counters (2 s scrape interval locally).
        async def counted() -> bool:
            placed = await _prometheus_value(
                'sum(rpc_requests_total{method=~".*/PlaceOrder",code="OK"})'
            )
            consumed = await _prometheus_value("sum(notification_events_consumed_total)")
            return placed > 0 and consumed > 0

        assert await eventually(counted, within=30.0, every=1.0), "counters not in Prometheus"
    finally:
        admin.close()
        user_stubs.close()
