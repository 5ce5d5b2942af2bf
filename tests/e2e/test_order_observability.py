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
from google.protobuf import json_format

from shop.order.v1 import order_pb2 as opb
from stack.model import state_dir
from tests.reliability.harness import (
    ADDRESS,
    Stubs,
    create_product,
    eventually,
    new_traceparent,
    place_traced_order,
    register,
)

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
    admin, user_stubs = Stubs(platform=True), Stubs()
    try:
        order, _, trace_id = await place_traced_order(admin, user_stubs, "obs")
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


def _spans_of(trace_id: str) -> list[dict]:
    """Every exported span of `trace_id`, across the services' JSONL span files."""
    found = []
    for path in sorted((state_dir() / "traces").glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            if trace_id in line:
                try:
                    span = json.loads(line)
                except ValueError:
                    continue
                if span.get("trace_id") == trace_id:
                    found.append(span)
    return found


def _has(spans: list[dict], service: str, kind: str, name_part: str) -> bool:
    return any(
        s["service"] == service and s["kind"] == kind and name_part in s["name"] for s in spans
    )


async def test_checkout_through_the_gateway_is_one_trace(stack) -> None:
    """A browser-style checkout (REST through NGINX -> Envoy, the client's own traceparent, as
    the storefront's transport sends it) is one trace: the order service's RPC and store
    calls, product and user answering order through Envoy's internal listener, the outbox
    relay's publish and the notification service's consume and email."""
    stack.require("order", "notification", "auth", "smtp-sink", "nginx")
    admin, user_stubs = Stubs(platform=True), Stubs()
    try:
        product = await create_product(admin, f"tr{uuid.uuid4().hex[:6]}", 5)
        buyer = await register(user_stubs, "trace")
        await buyer.login(user_stubs.auth)
        trace_id = secrets.token_hex(16)
        body = {
            "idempotency_key": f"trace-{uuid.uuid4().hex}",
            "user_id": buyer.user_id,
            "lines": [{"product_id": product.id, "quantity": 1}],
            "shipping_address": json_format.MessageToDict(
                ADDRESS, preserving_proto_field_name=True
            ),
        }
        headers = {**buyer.bearer, "traceparent": new_traceparent(trace_id)}
        async with httpx.AsyncClient(base_url=stack.nginx_url, timeout=30) as client:
            resp = await client.post("/api/v1/orders", json=body, headers=headers)
        assert resp.status_code == 200, resp.text
        order = resp.json()["order"]
        assert order["status"] == "ORDER_STATUS_CONFIRMED"

        want = {
            "order answered PlaceOrder": ("order", "SERVER", "PlaceOrder"),
            "order stored the order": ("order", "CLIENT", "db.add"),
            "order called product": ("order", "CLIENT", "ProductService/ReserveStock"),
            "product reserved the stock": ("product", "SERVER", "ReserveStock"),
            "product wrote the reservation": ("product", "CLIENT", "db.write"),
            "user answered order": ("user", "SERVER", "UserService/"),
            "the relay published OrderPlaced": ("order", "PRODUCER", "shop.orders.v1"),
            "notification consumed it": ("notification", "CONSUMER", "shop.orders.v1"),
        }

        async def missing() -> list[str]:
            spans = _spans_of(trace_id)
            return [what for what, key in want.items() if not _has(spans, *key)]

        async def complete() -> bool:
            return not await missing()

        # Span files are written by batch processors (every few seconds).
        assert await eventually(complete, within=90.0, every=2.0), (
            f"missing from trace {trace_id}: {await missing()}"
        )

        async def emailed() -> bool:
            lines = _log_lines_with("notification", trace_id)
            return any(e.get("msg") == "email sent" for e in lines)

        assert await eventually(emailed, within=60.0, every=1.0), "no 'email sent' in the trace"
    finally:
        admin.close()
        user_stubs.close()
