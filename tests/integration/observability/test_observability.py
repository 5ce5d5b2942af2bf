"""Metrics, traces and dashboards against real processes.

Private instances (own ports, own trace dir, own topics and consumer group) of the product
and notification services run beside the stack's, scraped by a private Prometheus started
from the generated scrape config and rules (1 s interval). Shared infrastructure (Postgres,
Kafka, registry, Envoy, NGINX + its exporter) comes from the stack.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable

import httpx
import pytest

from mesh import grafana
from mesh.api import load
from mesh.generate import DESCRIPTOR
from services.order.metrics import OrderMetrics
from services.runtime.metrics import Metrics
from services.user.metrics import UserOutboxMetrics
from tests.integration.observability.observability_world import LIST_PRODUCTS, Exercised, World

pytestmark = pytest.mark.stack


async def eventually(check: Callable[[], object], within: float, what: str) -> object:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(0.5)


async def test_prometheus_counts_the_rpc_and_the_consumed_event(world: World, exercised):
    rpc = f'rpc_requests_total{{service="product", method="{LIST_PRODUCTS}", code="OK"}}'
    assert await eventually(lambda: world.query(rpc) >= 1, 20, "ListProducts counter")
    sel = f'service="notification", topic="{world.topic}"'
    consumed = f"notification_events_consumed_total{{{sel}}}"
    assert await eventually(lambda: world.query(consumed) >= 1, 30, "consumed-events counter")
    runtime_consumed = f"kafka_consumed_total{{{sel}}}"
    assert await eventually(lambda: world.query(runtime_consumed) >= 1, 20, "kafka_consumed")
    # The generated rules load and evaluate: the per-method timeout recording rule exists.
    timeout = f'shop:rpc_timeout_seconds{{method="{LIST_PRODUCTS}"}}'
    assert await eventually(lambda: world.query(timeout) > 0, 20, "recording rules evaluated")


async def test_one_trace_id_from_producer_through_kafka_headers_to_notification_log(
    world: World, exercised: Exercised
):
    # Kafka header: the producer span's context, in the request's trace.
    assert exercised.header_traceparent.split("-")[1] == exercised.event_trace_id

    def notification_lines() -> list[dict]:
        return [ln for ln in world.notification.lines() if ln.get("event_id") == exercised.event_id]

    lines = await eventually(notification_lines, 30, "notification logs the event")
    assert {ln.get("trace_id") for ln in lines} == {exercised.event_trace_id}
    # Its CONSUMER span went to the JSON-lines trace file, in the same trace.
    spans = world.tmp / "traces" / "notification.jsonl"
    await eventually(
        lambda: (
            spans.exists()
            and any(
                json.loads(raw)["trace_id"] == exercised.event_trace_id
                and json.loads(raw)["kind"] == "CONSUMER"
                for raw in spans.read_text().splitlines()
            )
        ),
        15,
        "notification consumer span exported",
    )


async def test_rpc_trace_continues_in_the_server_log_and_spans(world: World, exercised: Exercised):
    def rpc_lines() -> list[dict]:
        return [
            ln
            for ln in world.product.lines()
            if ln.get("msg") == "rpc" and ln.get("trace_id") == exercised.rpc_trace_id
        ]

    lines = await eventually(rpc_lines, 10, "product logs the call with the client's trace id")
    assert lines[0]["method"] == LIST_PRODUCTS
    spans = world.tmp / "traces" / "product.jsonl"

    def server_span() -> list[dict]:
        if not spans.exists():
            return []
        return [
            s
            for s in map(json.loads, spans.read_text().splitlines())
            if s["trace_id"] == exercised.rpc_trace_id and s["kind"] == "SERVER"
        ]

    found = await eventually(server_span, 15, "product server span exported")
    assert found[0]["name"] == LIST_PRODUCTS.strip("/")
    assert found[0]["parent_span_id"], "the server span is the child of the client span"


# ---------------------------------------------------------------- dashboards

# PromQL words that are not metric names.
_KEYWORDS = {
    "sum", "rate", "by", "without", "on", "ignoring", "group_left", "group_right", "and",
    "or", "unless", "bool", "histogram_quantile", "max", "min", "avg", "count", "delta",
    "increase", "irate", "topk", "bottomk", "vector", "offset", "le",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside label matchers, strings,
    grouping clauses and ranges, that are not functions or keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group(0)
        rest = text[m.end() :].lstrip()
        if word in _KEYWORDS or rest.startswith("("):
            continue
        names.add(word)
    return names


def exported_names(exposition: str) -> set[str]:
    """Sample names plus family names (a family without samples yet still counts)."""
    out = set()
    for line in exposition.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            fam = line.split()[2]
            out |= {fam, f"{fam}_total", f"{fam}_bucket", f"{fam}_count", f"{fam}_sum"}
        elif line and not line.startswith("#"):
            out.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return out


def test_every_dashboard_query_names_an_exported_metric(stack, world: World, exercised):
    texts = [
        httpx.get(f"http://127.0.0.1:{p.metrics_port}/metrics", timeout=5).text
        for p in (world.product, world.notification)
    ]
    # Order and user are not run privately here: their registries as the services build them.
    order = Metrics("order")
    OrderMetrics(order.registry)
    texts.append(order.exposition().decode())
    user = Metrics("user")
    UserOutboxMetrics(user.registry)
    texts.append(user.exposition().decode())
    texts.append(httpx.get(f"{stack.envoy_admin_url}/stats/prometheus", timeout=5).text)
    texts.append(httpx.get("http://127.0.0.1:9113/metrics", timeout=5).text)
    texts.append(httpx.get(f"{world.prometheus_url}/metrics", timeout=5).text)
    exported = set().union(*(exported_names(t) for t in texts))
    # Per-partition lag exists once the notification consumer has read a record.
    assert "kafka_consumer_lag" in exported

    boards = grafana.dashboards(load(DESCRIPTOR))
    missing = {}
    queries = 0
    for name, board in boards.items():
        json.loads(json.dumps(board))  # plain JSON
        for panel in board["panels"]:
            for target in panel.get("targets", ()):
                queries += 1
                names = metric_names(target["expr"])
                assert names, f"{name}: {panel['title']}: no metric in {target['expr']!r}"
                for metric in names - exported:
                    missing.setdefault(metric, []).append(f"{name}: {panel['title']}")
    assert queries > 50
    assert not missing, f"dashboard metrics nobody exports: {missing}"
