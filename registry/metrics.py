"""RED metrics of the registry's HTTP API and the GET /metrics handler that exposes them.

Named like the services' figures (services/runtime/metrics.py) with HTTP in place of gRPC:
`http_requests_total{route,method,code}`, `http_request_duration_seconds{route,method}`
(histogram, the runtime's buckets) and `http_requests_in_flight`. `route` is the route
template (`/subjects/{subject}/versions`), never the raw path: subject names and ids would
make one series per subject. Prometheus scrapes /metrics on the API port (job `registry`,
mesh/prometheus.py); scrapes themselves are not counted, so the figures are API traffic only.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "unmatched"  # 404/405 from the router: one series, whatever the path
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# services.runtime.metrics.LATENCY_BUCKETS, repeated: the registry image carries registry/
# only, not services/ (deploy/docker/python.Dockerfile, target registry).
# tests/unit/registry keeps them equal.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class HttpMetrics:
    """One process's HTTP RED figures in their own registry (no import-time globals)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "http_requests",
            "HTTP requests by route template, method and status code",
            ["route", "method", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency, first byte in to response ready",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("http_requests_in_flight", "HTTP requests being served", registry=r)

    def middleware(self) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        """Outermost middleware: it sees the status the client gets, after errors_middleware
        has turned registry errors into responses."""

        @web.middleware
        async def red(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path == METRICS_PATH:
                return await handler(request)
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else UNMATCHED_ROUTE
            start = time.perf_counter()
            code = 500
            self.in_flight.inc()
            try:
                response = await handler(request)
                code = response.status
                return response
            except web.HTTPException as exc:
                code = exc.status
                raise
            finally:
                self.in_flight.dec()
                self.duration.labels(route, request.method).observe(time.perf_counter() - start)
                self.requests.labels(route, request.method, str(code)).inc()

        return red

    async def handle(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
