"""Prometheus metrics of one service process (own registry, no import-time globals) and the
/metrics HTTP endpoint.

RED per RPC: `rpc_requests_total{method,code}`, `rpc_duration_seconds{method}` (histogram),
`rpc_in_flight` (the server's count, read at scrape time: nothing to update per call).
The DB router adds `db_reads_total{target,reason}` (target primary with a reason
`replica_*` = a fallback), `db_replica_lag_bytes` and, read at scrape time,
`db_pool_connections{pool,state}`. runtime.kafka adds `kafka_produced_total{topic,result}`,
`kafka_produce_seconds{topic}`, `kafka_consumed_total{topic}`, per-partition
`kafka_consumer_lag{group,topic,partition}` and `kafka_topic_messages{topic}` (DLQ size).

A service with several worker processes (runtime/workers.py) has one /metrics for all of
them, served by its supervisor: prometheus_client's multiprocess mode (each worker's values
in mmap files under PROMETHEUS_MULTIPROC_DIR) merges counters and histograms by summing,
and each gauge by its `multiprocess_mode` below (a dependency is up when every worker sees
it up, a lag is the largest seen). Gauges declared without a mode (a service's own, set by
background tasks that run in worker 0) are summed over workers. Figures computed at scrape
time and other custom collectors live in one process only: each worker writes them to
`custom_<pid>.prom` every `SNAPSHOT_INTERVAL_S`, and the supervisor adds them up per series
(calls in flight and pool connections of all workers, the lag of each partition from the
worker that owns it), so they are up to that old.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
SNAPSHOT_INTERVAL_S = 1.0


class _Registry(CollectorRegistry):
    """A registry that sorts its collectors into prometheus_client metrics (`declared`: in a
    worker their values live in the multiprocess files) and the rest (`custom`: scrape-time
    gauges, a cache's figures), which a worker snapshots to a file."""

    def __init__(self) -> None:
        super().__init__()
        self.custom: list[Collector] = []
        self.declared: list[MetricWrapperBase] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        if isinstance(collector, MetricWrapperBase):
            self.declared.append(collector)
        else:
            self.custom.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        for group in (self.custom, self.declared):
            if collector in group:
                group.remove(collector)  # type: ignore[arg-type]


class Metrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = _Registry()
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
        self.db_reads = Counter(
            "db_reads",
            "read units of work by the server that served them and why",
            ["target", "reason"],
            registry=r,
        )
        self.replica_lag_bytes = Gauge(
            "db_replica_lag_bytes",
            "primary WAL position minus replica replay position",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.dependency_up = Gauge(
            "dependency_up",
            "1 when a dependency's health check passes",
            ["name"],
            registry=r,
            multiprocess_mode="livemin",  # up when every worker sees it up
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
            registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.scrape_time = _ScrapeTimeGauges()
        r.register(self.scrape_time)

    def gauge_at_scrape(self, key: str, read: Callable[[], Iterator[Sample]]) -> None:
        """Register (or replace) a source of figures read when Prometheus scrapes: pool
        sizes, consumer lag. `read` yields (metric, help, labels, value)."""
        self.scrape_time.sources[key] = read

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def write_snapshot(self, directory: Path) -> None:
        """A worker's custom collectors (scrape-time gauges...) as text, for its supervisor,
        and the families it declares without samples yet (a labelled counter nothing has
        counted: the multiprocess files know nothing of it, a single process would still
        list it). Written whole, then renamed: the supervisor never reads half a file."""
        text = generate_latest(_Collectors(self.registry.custom, describe=self.registry.declared))
        path = directory / f"custom_{os.getpid()}.prom"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(text)
        tmp.replace(path)

    async def snapshot_every(
        self, directory: Path, interval_s: float = SNAPSHOT_INTERVAL_S
    ) -> None:
        """Task of a worker: keep its snapshot current."""
        while True:
            try:
                self.write_snapshot(directory)
            except OSError:
                log.warning("metrics snapshot failed", exc_info=True)
            await asyncio.sleep(interval_s)


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


class _Collectors:
    def __init__(
        self, collectors: Iterable[Collector], describe: Iterable[MetricWrapperBase] = ()
    ) -> None:
        self.collectors = list(collectors)
        self.described = list(describe)

    def collect(self) -> Iterator[Metric]:
        for c in self.collectors:
            yield from c.collect()
        for m in self.described:
            yield from m.describe()  # name, help and type, no samples


class WorkersCollector(Collector):
    """The supervisor's view of its workers' metrics (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.multiprocess import MultiProcessCollector

        seen = set()
        for family in MultiProcessCollector(None, str(self.directory)).collect():
            if family.type == "gauge" and any("pid" in s.labels for s in family.samples):
                family = _summed(family, drop="pid")  # a gauge without a mode: sum workers
            seen.add(family.name)
            yield family
        for family in self._snapshots():
            if family.name not in seen:  # a declaration of a family seen above: skip it
                yield family

    def _snapshots(self) -> Iterator[Metric]:
        from prometheus_client.parser import text_string_to_metric_families

        families: dict[str, Metric] = {}
        for path in sorted(self.directory.glob("custom_*.prom")):
            try:
                text = path.read_text()
            except OSError:
                continue  # its worker just exited
            for fam in text_string_to_metric_families(text):
                have = families.get(fam.name)
                if have is None:
                    families[fam.name] = fam
                else:
                    have.samples.extend(fam.samples)
        for fam in families.values():
            yield _summed(fam)


def _summed(family: Metric, drop: str | None = None) -> Metric:
    """`family` with samples of equal name and labels (after dropping `drop`) added up."""
    out = Metric(family.name, family.documentation, family.type, family.unit)
    totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for s in family.samples:
        labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != drop))
        key = (s.name, labels)
        totals[key] = totals.get(key, 0.0) + s.value
    for (name, labels), value in totals.items():
        out.add_sample(name, dict(labels), value)
    return out


async def start_metrics_server(metrics: Metrics, host: str, port: int) -> web.AppRunner:
    """Serve GET /metrics on host:port; returns the runner to `cleanup()` at shutdown."""
    return await _serve(metrics.exposition, host, port)


async def start_workers_metrics_server(directory: Path, host: str, port: int) -> web.AppRunner:
    """A supervisor's /metrics: every worker's, merged (WorkersCollector)."""
    registry = CollectorRegistry()
    registry.register(WorkersCollector(directory))
    return await _serve(lambda: generate_latest(registry), host, port)


async def _serve(exposition: Callable[[], bytes], host: str, port: int) -> web.AppRunner:
    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics listening", extra={"fields": {"addr": f"http://{host}:{port}/metrics"}})
    return runner
