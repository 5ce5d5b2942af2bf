"""Metrics, traces and dashboards against real processes.

Private instances (own ports, own trace dir, own topics and consumer group) of the product
and notification services run beside the stack's, scraped by a private Prometheus started
from the generated scrape config and rules (1 s interval). Shared infrastructure (Postgres,
Kafka, registry, Envoy, NGINX + its exporter) comes from the stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from confluent_kafka.admin import AdminClient, NewTopic
from grpclib.client import Channel
from opentelemetry.trace import SpanKind

from mesh import grafana, prometheus
from mesh.api import load
from mesh.generate import DESCRIPTOR
from services.order.metrics import OrderMetrics
from services.runtime import tracing
from services.runtime.kafka import AvroSerde, EventConsumer, EventProducer, KafkaConfig
from services.runtime.metrics import Metrics
from services.user.metrics import UserOutboxMetrics
from shop.events import v1 as events
from shop.product.v1 import product_grpc, product_pb2
from stack.model import REPO_ROOT

pytestmark = pytest.mark.stack

REGISTRY = "http://127.0.0.1:8085"
LIST_PRODUCTS = "/shop.product.v1.ProductService/ListProducts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], object], within: float, what: str) -> object:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        time.sleep(0.25)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    metrics_port: int = 0
    grpc_port: int = 0

    def lines(self) -> list[dict]:
        out = []
        for raw in self.log.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                with contextlib.suppress(ValueError):  # a line cut by a crash
                    out.append(json.loads(raw))
        return out


def spawn(name: str, argv: list[str], env: dict[str, str], log: Path) -> Proc:
    handle = log.open("wb")
    popen = subprocess.Popen(
        argv, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT
    )
    return Proc(name, popen, log)


@dataclass
class World:
    tmp: Path
    product: Proc
    notification: Proc
    prometheus_url: str
    topic: str

    def query(self, promql: str) -> float:
        r = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
        r.raise_for_status()
        result = r.json()["data"]["result"]
        return sum(float(s["value"][1]) for s in result)


@pytest.fixture(scope="module")
def world(stack, tmp_path_factory) -> Iterator[World]:
    stack.require("postgres", "kafka", "registry", "envoy", "nginx-exporter")
    tmp = tmp_path_factory.mktemp("observability")
    traces = tmp / "traces"
    base = f"obs.{uuid.uuid4().hex[:8]}.orders"
    names = [base, f"{base}.retry.1", f"{base}.dlq"]
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    for fut in admin.create_topics([NewTopic(n, 1, 1) for n in names]).values():
        fut.result(timeout=20)
    procs: list[Proc] = []
    try:
        pm, nm = free_port(), free_port()
        common = {"SHOPMESH_TRACE_DIR": str(traces), "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
        product = spawn(
            "product",
            [sys.executable, "-m", "services.product.main"],
            {**common, "PRODUCT_GRPC_PORT": str(free_port()), "PRODUCT_METRICS_PORT": str(pm)},
            tmp / "product.log",
        )
        product.metrics_port = pm
        procs.append(product)
        notification = spawn(
            "notification",
            [sys.executable, "-m", "services.notification.main"],
            {
                **common,
                "NOTIFICATION_GRPC_PORT": str(free_port()),
                "NOTIFICATION_METRICS_PORT": str(nm),
                "NOTIFICATION_TOPICS": base,
                "NOTIFICATION_GROUP_ID": f"obs-{uuid.uuid4().hex[:8]}",
                "NOTIFICATION_RETRY_DELAYS_S": "0.5",
                # Nobody listens there: the event fails over to the DLQ (no email, no
                # dependency on the shared user service), through the whole pipeline.
                "NOTIFICATION_USER_ADDR": "127.0.0.1:9",
                "NOTIFICATION_ORDER_ADDR": "127.0.0.1:9",
            },
            tmp / "notification.log",
        )
        notification.metrics_port = nm
        procs.append(notification)
        pp = free_port()
        opt = prometheus.PrometheusOptions(
            prometheus_port=pp,
            scrape_interval="1s",
            evaluation_interval="1s",
            service_ports={"product": pm, "notification": nm},
        )
        conf = tmp / "prometheus" / "prometheus.yml"
        conf.parent.mkdir()
        conf.write_text(yaml.safe_dump(prometheus.scrape_config(opt)))
        (conf.parent / "rules.yml").write_text(yaml.safe_dump(prometheus.rules(load(DESCRIPTOR))))
        prom = spawn(
            "prometheus",
            [
                "/usr/bin/prometheus",
                f"--config.file={conf}",
                f"--storage.tsdb.path={tmp / 'prometheus' / 'data'}",
                f"--web.listen-address=127.0.0.1:{pp}",
                "--log.level=warn",
            ],
            {},
            tmp / "prometheus.log",
        )
        procs.append(prom)
        for p in (product, notification):
            wait_until(
                lambda p=p: (
                    http_ok(f"http://127.0.0.1:{p.metrics_port}/metrics")
                    and any(ln.get("msg") == "serving" for ln in p.lines())
                ),
                40,
                f"{p.name} serving (log: {p.log})",
            )
        serving = next(ln for ln in product.lines() if ln.get("msg") == "serving")
        product.grpc_port = int(serving["grpc"].rsplit(":", 1)[1])
        wait_until(lambda: http_ok(f"http://127.0.0.1:{pp}/-/ready"), 30, "prometheus ready")
        yield World(tmp, product, notification, f"http://127.0.0.1:{pp}", base)
    finally:
        for p in procs:
            p.popen.terminate()
        for p in procs:
            try:
                p.popen.wait(15)
            except subprocess.TimeoutExpired:
                p.popen.kill()
        for fut in admin.delete_topics(names).values():
            fut.exception(timeout=20)


@dataclass
class Exercised:
    rpc_trace_id: str
    event_trace_id: str
    event_id: str
    header_traceparent: str


@pytest.fixture(scope="module")
async def exercised(world: World, tmp_path_factory) -> Exercised:
    """One traced RPC to product and one traced OrderPlaced event to notification."""
    span_file = tmp_path_factory.mktemp("client-traces") / "test.jsonl"
    tracing.install("observability-test", exporter=tracing.JsonLinesExporter(span_file))
    try:
        channel = tracing.instrument_channel(Channel("127.0.0.1", world.product.grpc_port))
        try:
            with tracing.tracer().start_as_current_span("test: list products"):
                rpc_trace = tracing.current_trace_id()
                reply = await product_grpc.ProductServiceStub(channel).ListProducts(
                    product_pb2.ListProductsRequest(page_size=5)
                )
        finally:
            channel.close()
        assert reply is not None

        cfg = KafkaConfig(registry_url=REGISTRY)
        price = events.Money(currency_code="USD", units=3, nanos=0)
        record = events.OrderPlaced(
            event_id=uuid.uuid4(),
            occurred_at=datetime.now(UTC),
            order_id=f"obs-{uuid.uuid4().hex[:8]}",
            user_id="obs-user",
            lines=[events.OrderLine("p-1", "Blue mug", 1, price)],
            total=price,
            shipping_city="Bergen",
        )
        async with EventProducer(cfg, AvroSerde(REGISTRY, auto_register=True)) as producer:
            with tracing.tracer().start_as_current_span("test: place order", kind=SpanKind.SERVER):
                event_trace = tracing.current_trace_id()
                await producer.publish(
                    world.topic, record, key=record.order_id, event_id=str(record.event_id)
                )
        # What a consumer sees in the record's headers.
        async with EventConsumer(cfg, AvroSerde(REGISTRY), [world.topic], None) as consumer:
            got = []
            deadline = time.monotonic() + 20
            while not got and time.monotonic() < deadline:
                got = [
                    e
                    for e in await consumer.getmany(timeout_ms=500)
                    if e.event_id == str(record.event_id)
                ]
        assert got, "the event is not in its topic"
        assert got[0].trace is not None
        return Exercised(rpc_trace, event_trace, str(record.event_id), got[0].trace.traceparent)
    finally:
        tracing.shutdown()


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
