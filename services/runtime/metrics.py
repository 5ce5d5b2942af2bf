"""Prometheus metrics of one service process (own registry, no import-time globals) and the
/metrics HTTP endpoint.

RED per RPC: `rpc_requests_total{method,code}`, `rpc_duration_seconds{method}` (histogram),
`rpc_in_flight`. The DB router adds `db_reads_total{target,reason}` (target primary with a
reason `replica_*` = a fallback), `db_replica_lag_bytes` and, read at scrape time,
`db_pool_connections{pool,state}`. runtime.kafka adds `kafka_produced_total{topic,result}`,
`kafka_produce_seconds{topic}`, `kafka_consumed_total{topic}`, per-partition
`kafka_consumer_lag{group,topic,partition}` and `kafka_topic_messages{topic}` (DLQ size).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

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

        self.kafka_produced = Counter(
            "kafka_produced", "records sent, by broker answer", ["topic", "result"], registry=r
        )
        self.kafka_produce_seconds = Histogram(
            "kafka_produce_seconds", "send to ack (acks=all)", ["topic"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.kafka_consumed = Counter(
            "kafka_consumed", "records read by this process", ["topic"], registry=r
        )
        self.kafka_topic_messages = Gauge(
            "kafka_topic_messages", "records retained in a topic (DLQ size)", ["topic"],
            registry=r,
        )  # fmt: skip
        self.scrape_time = _ScrapeTimeGauges()
        r.register(self.scrape_time)

    def gauge_at_scrape(self, key: str, read: Callable[[], Iterator[Sample]]) -> None:
        """Register (or replace) a source of figures read when Prometheus scrapes: pool
        sizes, consumer lag. `read` yields (metric, help, labels, value)."""
        self.scrape_time.sources[key] = read

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


Sample = tuple[str, str, dict[str, str], float]


class _ScrapeTimeGauges(Collector):
    """Gauges computed at scrape time from live objects (a pool, a consumer's assignment):
    always current, nothing to update on the hot path."""

    def __init__(self) -> None:
        self.sources: dict[str, Callable[[], Iterator[Sample]]] = {}

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # families depend on what is registered; collect() at every scrape

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for read in list(self.sources.values()):
            try:
                samples = list(read())
            except Exception:  # a closing pool or consumer must not break the scrape
                log.debug("scrape-time source failed", exc_info=True)
                continue
            for name, help_, labels, value in samples:
                fam = families.get(name)
                if fam is None:
                    fam = families[name] = GaugeMetricFamily(name, help_, labels=list(labels))
                fam.add_metric(list(labels.values()), value)
        yield from families.values()


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
