"""The generated Prometheus and Grafana files: promtool accepts them, they follow the schema,
and the tracing helpers propagate W3C context (in process, no servers)."""

from __future__ import annotations

import contextvars
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mesh import generate
from mesh.api import load
from services.runtime import tracing

PROMTOOL = shutil.which("promtool")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mesh-out")
    generate.write(generate.render(load(generate.DESCRIPTOR)), out)
    return out


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian prometheus package) missing")
def test_promtool_accepts_rules_and_scrape_config(files: Path):
    rules = subprocess.run(
        [PROMTOOL, "check", "rules", str(files / "prometheus" / "rules.yml")],
        capture_output=True,
        text=True,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = subprocess.run(
        [PROMTOOL, "check", "config", str(files / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_rules_cover_the_alerts_the_platform_needs(files: Path):
    doc = yaml.safe_load((files / "prometheus" / "rules.yml").read_text())
    alerts = {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}
    for name, metric in {
        "ShopRpcErrorRatioHigh": "shop:rpc_error_ratio:rate5m",
        "ShopRpcLatencyP99High": "shop:rpc_latency_p99:rate5m",
        "ShopConsumerLagHigh": "kafka_consumer_lag",
        "ShopDeadLetterQueueGrowing": "kafka_topic_messages",
        "ShopReplicaLagHigh": "db_replica_lag_bytes",
        "ShopOutboxStale": "order_outbox_oldest_pending_age_seconds",
    }.items():
        assert metric in alerts[name]["expr"], name
    # One timeout series per schema method, so the p99 alert compares against the schema.
    api = load(generate.DESCRIPTOR)
    rules = [r for g in doc["groups"] for r in g["rules"]]
    timeouts = [r for r in rules if r.get("record") == "shop:rpc_timeout_seconds"]
    assert {r["labels"]["method"] for r in timeouts} == {m.grpc_path for m in api.methods}


def test_scrape_config_has_every_service_envoy_nginx_and_prometheus(files: Path):
    doc = yaml.safe_load((files / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert set(jobs) >= {"services", "envoy", "nginx", "prometheus"}
    services = {sc["labels"]["service"] for sc in jobs["services"]["static_configs"]}
    api = load(generate.DESCRIPTOR)
    assert services == {s.short for s in api.services}
    assert jobs["envoy"]["metrics_path"] == "/stats/prometheus"
    assert doc["global"]["scrape_interval"] == "2s"


def test_each_service_dashboard_has_a_row_per_rpc(files: Path):
    api = load(generate.DESCRIPTOR)
    boards = files / "grafana" / "dashboards"
    for svc in api.services:
        board = json.loads((boards / f"{svc.short}.json").read_text())
        rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
        for m in svc.methods:
            assert any(r.startswith(f"{m.name} ") for r in rows), f"{svc.short}: {m.name}"
        exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", ())]
        assert all(f'service="{svc.short}"' in e for e in exprs)
    for extra in ("mesh.json", "events.json"):
        assert json.loads((boards / extra).read_text())["panels"]
    for prov in ("datasources", "dashboards"):
        path = files / "grafana" / "provisioning" / prov / "shopmesh.yml"
        assert yaml.safe_load(path.read_text())


def test_traceparent_round_trip_keeps_the_trace(tmp_path: Path):
    spans = tmp_path / "t.jsonl"
    tracing.install("unit", exporter=tracing.JsonLinesExporter(spans))
    try:
        with tracing.tracer().start_as_current_span("parent"):
            parent_trace = tracing.current_trace_id()
            header, _ = tracing.traceparent()
        assert header.split("-")[1] == parent_trace
        rid = "ab" * 16

        def serve_two_calls() -> None:
            span = tracing.start_server_span("/shop.x.v1.X/Do", {"traceparent": header})
            assert f"{span.get_span_context().trace_id:032x}" == parent_trace
            tracing.end_rpc_span(span, "INTERNAL")
            # Only an x-request-id of 32 hex digits: it becomes the trace id.
            span = tracing.start_server_span("/shop.x.v1.X/Do", {}, rid)
            assert f"{span.get_span_context().trace_id:032x}" == rid
            tracing.end_rpc_span(span, "OK")

        # A server span stays current in its call's own task; here, a context of its own.
        contextvars.copy_context().run(serve_two_calls)
    finally:
        tracing.shutdown()
    lines = [json.loads(x) for x in spans.read_text().splitlines()]
    server = [s for s in lines if s["kind"] == "SERVER"]
    assert [s["trace_id"] for s in server] == [parent_trace, rid]
    assert server[0]["status"] == "ERROR" and server[0]["parent_span_id"]
