"""Server bootstrap: `serve(config, handlers, resources, tasks)` and graceful shutdown. A
service's main.py builds config, resources and handlers, then calls `run(main)`; everything
else lives here. Every application RPC goes through the per-call wrapper (calls.py).

Lifecycle (start -> stop): resources open in order in an AsyncExitStack, the health loop and
tasks start, grpclib Server (+ Health + reflection) and /metrics listen. On SIGTERM/SIGINT:
health goes NOT_SERVING, the listener closes, new calls on open connections get
UNAVAILABLE, in-flight calls drain for up to `drain_timeout_s`, the server closes, tasks are
cancelled and resources close in reverse order. A second signal skips the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from grpclib.reflection.service import ServerReflection

from services.runtime import tracing
from services.runtime.calls import _Wrapped
from services.runtime.config import ConfigError, check_port, load, setting
from services.runtime.health import Health
from services.runtime.logs import ACCESS_LOG_MODES, AccessLog, setup_logging
from services.runtime.metrics import Metrics, start_metrics_server
from services.runtime.policy import AuthHook
from services.runtime.transport import RuntimeServer

log = logging.getLogger("services.runtime.server")


@dataclass(frozen=True)
class ServerConfig:
    """Env: <SERVICE>_<FIELD>, e.g. PRODUCT_GRPC_PORT, PRODUCT_METRICS_PORT."""

    name: str = setting("service", help="service name in logs and metrics")
    host: str = setting("127.0.0.1", help="listen address (gRPC and metrics)")
    grpc_port: int = setting(0, help="gRPC port (0 = any free port, for tests)")
    metrics_port: int = setting(0, help="Prometheus /metrics port (0 = any free port)")
    drain_timeout_s: float = setting(10.0, help="how long shutdown waits for in-flight calls")
    health_interval_s: float = setting(1.0, help="dependency check period")
    log_level: str = setting("INFO", help="log level")
    access_log: str = setting("all", help="per-call JSON log line: all | errors | off")

    @classmethod
    def from_env(cls, prefix: str, environ: Any = None, **defaults: Any) -> ServerConfig:
        cfg = load(cls, prefix, environ, **defaults)
        if cfg.access_log not in ACCESS_LOG_MODES:
            raise ConfigError(
                f"{prefix}_ACCESS_LOG={cfg.access_log!r}: expected one of "
                + ", ".join(ACCESS_LOG_MODES)
            )
        for field in ("grpc_port", "metrics_port"):
            if getattr(cfg, field):
                check_port(f"{prefix}_{field.upper()}", getattr(cfg, field))
        return cfg


class Resource(Protocol):
    """Something opened at start and closed at exit (a Database, a Kafka producer)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...


Task = Callable[[], Awaitable[None]]


# ---------------------------------------------------------------- the application


class App:
    """One service process: start() / stop() for tests, run() for main.py."""

    def __init__(
        self,
        config: ServerConfig,
        handlers: Sequence[Any],
        resources: Sequence[Resource] = (),
        tasks: Sequence[Task] = (),
        *,
        metrics: Metrics | None = None,
        auth: AuthHook | None = None,
        log_calls: bool = True,
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics(config.name)
        self.resources = list(resources)
        self.task_fns = list(tasks)
        self.auth = auth
        self.log_calls = log_calls
        mode = config.access_log if log_calls else "off"
        self.access_log = AccessLog(log, mode) if mode != "off" else None
        self.in_flight = 0
        self.draining = False
        self.grpc_port = 0
        self.metrics_port = 0
        self._handlers = [_Wrapped(h, self) for h in handlers]
        names = [next(iter(h.__mapping__())).split("/")[1] for h in handlers]
        self.health = Health(names, self.metrics)
        self._stack = contextlib.AsyncExitStack()
        self._server: RuntimeServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._idle = asyncio.Event()  # set whenever no call is in flight (drain waits on it)
        self._idle.set()
        self._stopping: asyncio.Future[None] | None = None
        self.exit_code = 0

    async def start(self) -> None:
        cfg = self.config
        try:
            for res in self.resources:
                await res.open()
                self._stack.push_async_callback(res.close)
                checks = getattr(res, "health_checks", None)
                for name, (fn, required) in (checks() if checks else {}).items():
                    self.health.add(name, fn, required)
            await self.health.check_all()  # first answer reflects real state, not a guess
            self._spawn(self.health.run_checks(cfg.health_interval_s), "health")
            runner = await start_metrics_server(self.metrics, cfg.host, cfg.metrics_port)
            self._stack.push_async_callback(runner.cleanup)
            self.metrics_port = runner.addresses[0][1]
            services = ServerReflection.extend([*self._handlers, self.health])
            self._server = RuntimeServer(services)
            await self._server.start(cfg.host, cfg.grpc_port)
            self.grpc_port = self._server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            for fn in self.task_fns:
                self._spawn(fn(), getattr(fn, "__qualname__", "task"))
        except BaseException:
            await self._stack.aclose()
            raise
        log.info(
            "serving",
            extra={
                "fields": {
                    "grpc": f"{cfg.host}:{self.grpc_port}",
                    "metrics": f"{cfg.host}:{self.metrics_port}",
                }
            },
        )

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(lambda t: self._task_done(t, name))
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None], name: str) -> None:
        if task.cancelled() or self.draining:
            return
        exc = task.exception()
        # A background task must not die silently (an outbox relay that stopped is an outage
        # nobody sees): stop the process so the supervisor restarts it.
        log.error(
            "background task ended, shutting down", exc_info=exc, extra={"fields": {"task": name}}
        )
        self.exit_code = 1
        self._stopping = asyncio.ensure_future(self.stop())

    async def stop(self, drain_timeout: float | None = None) -> None:
        if self.draining:
            await self._stopped.wait()
            return
        self.draining = True
        self.health.serving.set(False)
        timeout = self.config.drain_timeout_s if drain_timeout is None else drain_timeout
        try:
            if self._server is not None:
                inner = self._server._server  # asyncio.Server: stop accepting connections
                if inner is not None:
                    inner.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), timeout)
                if self.in_flight:
                    log.warning("drain timeout, cancelling %d calls", self.in_flight)
                self._server.close()
                await self._server.wait_closed()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._stack.aclose()
        finally:
            log.info("stopped")
            self._stopped.set()

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT (or a task failure), then stop gracefully."""
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal(sig: signal.Signals) -> None:
            nonlocal signals
            signals += 1
            log.info("signal %s: %s", sig.name, "draining" if signals == 1 else "closing now")
            if signals == 1:
                self._stopping = asyncio.ensure_future(self.stop())
            elif self._server is not None:
                self._server.close()  # cancels in-flight calls: the drain ends at once

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        await self.start()
        await self._stopped.wait()


async def serve(
    config: ServerConfig,
    handlers: Sequence[Any],
    resources: Sequence[Resource] = (),
    tasks: Sequence[Task] = (),
    *,
    metrics: Metrics | None = None,
    auth: AuthHook | None = None,
) -> int:
    """Run a service until a signal; returns the exit code. Without an explicit `auth`, every
    service gets the runtime's token check and schema access levels (services/runtime/auth.py)."""
    setup_logging(config.name, config.log_level)
    if auth is None:
        from services.runtime.auth import RuntimeAuth

        auth = RuntimeAuth.from_env(config.name)
        resources = [*resources, auth]
    tracing.install(config.name)
    app = App(config, handlers, resources, tasks, metrics=metrics, auth=auth)
    try:
        await app.run()
    finally:
        tracing.shutdown()  # flush the last spans
    return app.exit_code


def run(main: Callable[[], Awaitable[int | None]]) -> None:
    """Entry point of every main.py: uvloop when available, config errors exit 2 naming the
    variable (no stack trace), otherwise the code `main` returns."""
    try:
        import uvloop

        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        code = runner(main())
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
