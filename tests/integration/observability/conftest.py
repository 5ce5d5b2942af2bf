"""The observability tests' shared setup (costly: private processes and a private
Prometheus), one per test module: `world` and `exercised`."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import yaml
from confluent_kafka.admin import AdminClient, NewTopic
from grpclib.client import Channel
from opentelemetry.trace import SpanKind

from mesh import prometheus
from mesh.api import load
from mesh.generate import DESCRIPTOR
from services.runtime import tracing
from services.runtime.kafka import AvroSerde, EventConsumer, EventProducer, KafkaConfig
from shop.events import v1 as events
from shop.product.v1 import product_grpc, product_pb2
from tests.integration.observability.observability_world import (
    REGISTRY,
    Exercised,
    Proc,
    World,
    free_port,
    http_ok,
    spawn,
    wait_until,
)


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
