"""Prometheus metrics of one service process (own registry, no import-time globals) and the
/metrics HTTP endpoint.

RED per RPC: `rpc_requests_total{method,code}`, `rpc_duration_seconds{method}` (histogram),
`rpc_in_flight`. The DB router adds `db_reads_total{target,reason}` and `db_replica_lag_bytes`.
"""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        r = self.registry
        self.rpc_requests = Counter(
            "rpc_requests", "gRPC calls by method and status code", ["method", "code"], registry=r
        )
        self.rpc_duration = Histogram(
            "rpc_duration_seconds",
            "gRPC call latency",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rpc_in_flight = Gauge("rpc_in_flight", "gRPC calls being served", registry=r)
        self.db_reads = Counter(
            "db_reads",
            "read units of work by the server that served them and why",
            ["target", "reason"],
            registry=r,
        )
        self.replica_lag_bytes = Gauge(
            "db_replica_lag_bytes", "primary WAL position minus replica replay position", registry=r
        )
        self.dependency_up = Gauge(
            "dependency_up", "1 when a dependency's health check passes", ["name"], registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def start_metrics_server(metrics: Metrics, host: str, port: int) -> web.AppRunner:
    """Serve GET /metrics on host:port; returns the runner to `cleanup()` at shutdown."""

    async def handle(_: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics listening", extra={"fields": {"addr": f"http://{host}:{port}/metrics"}})
    return runner
