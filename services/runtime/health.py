"""grpc.health.v1 Health driven by real dependency checks.

One grpclib `ServiceStatus` per dependency (e.g. `postgres/product:primary`), set by a
periodic check loop, plus `serving` which shutdown turns off first. Names answered:

- "" and each gRPC service name (e.g. "shop.product.v1.ProductService"): SERVING only when
  the server is not draining and every *required* dependency passes;
- each dependency name: that dependency alone (an optional replica can be NOT_SERVING while
  the service as a whole still serves, reading from the primary).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from grpclib.const import Status
from grpclib.health.check import ServiceStatus
from grpclib.health.v1.health_grpc import HealthBase
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.server import Stream

from services.runtime.metrics import Metrics

log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 3.0  # one dependency check; a hung one counts as down

CheckFn = Callable[[], Awaitable[bool]]


class Health(HealthBase):
    def __init__(self, service_names: Iterable[str], metrics: Metrics) -> None:
        self.metrics = metrics
        self.serving = ServiceStatus()
        self.serving.set(True)
        self._deps: dict[str, tuple[ServiceStatus, CheckFn, bool]] = {}
        self._services = set(service_names) | {""}

    def add(self, name: str, check: CheckFn, required: bool) -> None:
        self._deps[name] = (ServiceStatus(), check, required)

    def _statuses(self, name: str) -> list[ServiceStatus] | None:
        if name in self._services:
            return [self.serving, *(s for s, _, req in self._deps.values() if req)]
        if name in self._deps:
            return [self._deps[name][0]]
        return None

    @staticmethod
    def _value(statuses: list[ServiceStatus]) -> int:
        # None (not checked yet) counts as not serving: never claim health we did not see.
        if all(s.__status__() is True for s in statuses):
            return HealthCheckResponse.SERVING
        return HealthCheckResponse.NOT_SERVING

    async def check_all(self) -> None:
        async def one(name: str, status: ServiceStatus, fn: CheckFn) -> None:
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_S):
                    ok = bool(await fn())
            except TimeoutError:
                # A dependency that accepts connections but never answers is down too, and
                # must not stall every later check (the status would stay stale).
                log.warning(
                    "health check timed out",
                    extra={"fields": {"dependency": name, "timeout_s": CHECK_TIMEOUT_S}},
                )
                ok = False
            except Exception:
                log.exception("health check crashed", extra={"fields": {"dependency": name}})
                ok = False
            if status.__status__() is not ok:
                log.log(
                    logging.INFO if ok else logging.WARNING,
                    "dependency %s" % ("up" if ok else "down"),
                    extra={"fields": {"dependency": name}},
                )
            status.set(ok)
            self.metrics.dependency_up.labels(name).set(1 if ok else 0)

        await asyncio.gather(*(one(n, s, f) for n, (s, f, _) in self._deps.items()))

    async def run_checks(self, interval: float) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(interval)

    async def Check(self, stream: Stream[HealthCheckRequest, HealthCheckResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        statuses = self._statuses(request.service)
        if statuses is None:
            await stream.send_trailing_metadata(status=Status.NOT_FOUND)
            return
        await stream.send_message(HealthCheckResponse(status=self._value(statuses)))

    async def Watch(self, stream: Stream[HealthCheckRequest, HealthCheckResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        statuses = self._statuses(request.service)
        if statuses is None:
            await stream.send_message(
                HealthCheckResponse(status=HealthCheckResponse.SERVICE_UNKNOWN)
            )
            return  # the spec keeps the stream open; ending it is enough for our probes
        events = [await s.__subscribe__() for s in statuses]
        try:
            last = None
            while True:
                value = self._value(statuses)
                if value != last:
                    await stream.send_message(HealthCheckResponse(status=value))
                    last = value
                waits = [asyncio.ensure_future(e.wait()) for e in events]
                _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in pending:
                    w.cancel()
                for e in events:
                    e.clear()
        finally:
            for s, e in zip(statuses, events, strict=True):
                await s.__unsubscribe__(e)
