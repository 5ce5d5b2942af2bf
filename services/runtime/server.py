"""Server bootstrap: `serve(config, handlers, resources, tasks)` and graceful shutdown. A
service's main.py builds config, resources and handlers, then calls `run(main)`; everything
else lives here. Every application RPC goes through the per-call wrapper (calls.py).

Lifecycle (start -> stop): resources open in order in an AsyncExitStack, the health loop and
tasks start, grpclib Server (+ Health + reflection) and /metrics listen. On SIGTERM/SIGINT:
health goes NOT_SERVING, the listener closes, new calls on open connections get
UNAVAILABLE, in-flight calls drain for up to `drain_timeout_s`, the server closes, tasks are
cancelled and resources close in reverse order. A second signal skips the drain.

With `<SERVICE>_WORKERS` > 1 (default: one per core), serve() supervises that many copies of
the process on one port instead (workers.py); each worker runs this same lifecycle, told to
drain by its supervisor rather than by a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from grpclib.reflection.service import ServerReflection

from services.runtime import tracing, workers
from services.runtime.calls import _Wrapped
from services.runtime.config import ConfigError, check_port, load, setting
from services.runtime.health import Health
from services.runtime.logs import ACCESS_LOG_MODES, AccessLog, setup_logging
from services.runtime.metrics import Metrics, start_metrics_server, start_workers_metrics_server
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
    workers: int = setting(
        0,
        help="processes serving the gRPC port (SO_REUSEPORT) under one supervisor that "
        "serves /metrics; 0 = one per available core (CPU affinity, cgroup CPU limit)",
    )

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
        if not 0 <= cfg.workers <= 256:
            raise ConfigError(f"{prefix}_WORKERS={cfg.workers}: expected 0 (one per core)..256")
        return cfg


class Resource(Protocol):
    """Something opened at start and closed at exit (a Database, a Kafka producer)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...


Task = Callable[[], Awaitable[None]]


def per_process(task: Task) -> Task:
    """Mark a background task that every worker process runs because it keeps that
    process's own state current (e.g. reloading signing keys). Unmarked tasks run once per
    service, in worker 0 (outbox relays, Kafka consumers, sweepers)."""

    async def each_process() -> None:
        await task()

    each_process.per_process = True  # type: ignore[attr-defined]
    each_process.__qualname__ = getattr(task, "__qualname__", "task")
    return each_process


def every(
    period_s: float,
    job: Callable[[], Awaitable[Any]],
    what: str,
    *,
    logger: logging.Logger = log,
    on_result: Callable[[Any], None] | None = None,
) -> Task:
    """A background task that runs `job` every `period_s` seconds (after the first wait).
    A failing run is logged ("<what> failed") and the next period tries again: a sweeper
    or pruner must outlive a store that is briefly away. `on_result` sees each result."""

    async def periodic() -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                result = await job()
            except Exception:
                logger.exception("%s failed", what)
                continue
            if on_result is not None:
                on_result(result)

    periodic.__qualname__ = what
    return periodic


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
        role: workers.Role | None = None,
    ) -> None:
        self.config = config
        self.role = role  # a worker of a multi-process service (None: the only process)
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
        self.metrics.gauge_at_scrape(
            "rpc_in_flight",
            lambda: iter([("rpc_in_flight", "gRPC calls being served", {}, self.in_flight)]),
        )
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
            role = self.role
            if role is None:
                runner = await start_metrics_server(self.metrics, cfg.host, cfg.metrics_port)
                self._stack.push_async_callback(runner.cleanup)
                self.metrics_port = runner.addresses[0][1]
            else:  # the supervisor serves /metrics; this worker's custom figures go by file
                directory = Path(workers.metrics_dir())
                self.metrics.write_snapshot(directory)
                self._spawn(self.metrics.snapshot_every(directory), "metrics snapshot")
            services = ServerReflection.extend([*self._handlers, self.health])
            self._server = RuntimeServer(services)
            if role is None:
                await self._server.start(cfg.host, cfg.grpc_port)
            else:
                await self._server.start(cfg.host, role.grpc_port, reuse_port=True)
            self.grpc_port = self._server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            for fn in self.task_fns:
                if role is None or role.runs_tasks or getattr(fn, "per_process", False):
                    self._spawn(fn(), getattr(fn, "__qualname__", "task"))
        except BaseException:
            for task in self._tasks:  # the health loop, tasks started before the failure
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._stack.aclose()
            raise
        log.info(
            "serving",
            extra={
                "fields": {
                    "grpc": f"{cfg.host}:{self.grpc_port}",
                    "metrics": f"{cfg.host}:{self.metrics_port}" if self.role is None else "",
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
        """Start, serve until SIGTERM/SIGINT (or a task failure), then stop gracefully. A
        worker takes the same two steps from its supervisor's control pipe instead."""
        loop = asyncio.get_running_loop()
        requests = 0
        starting: asyncio.Future[None] | None = None

        def stop_requested(why: str, now: bool = False) -> None:
            nonlocal requests
            requests += 1
            if starting is not None and not starting.done():
                # Still starting (a worker importing, a database slow to answer): stop
                # here rather than let start() go on to serve after stop() has run.
                log.info("%s: stopping before serving", why)
                starting.cancel()
                return
            first = requests == 1 and not now
            log.info("%s: %s", why, "draining" if first else "closing now")
            if requests == 1:
                self._stopping = asyncio.ensure_future(self.stop(drain_timeout=0 if now else None))
            if not first and self._server is not None:
                self._server.close()  # cancels in-flight calls: the drain ends at once

        if self.role is None:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lambda s=sig: stop_requested(f"signal {s.name}"))
        else:
            workers.watch_control(
                self.role.control_fd,
                lambda cmd: stop_requested("supervisor", now=cmd == workers.CLOSE_NOW),
            )
        starting = asyncio.ensure_future(self.start())
        try:
            await starting
        except asyncio.CancelledError:
            if not requests:
                raise
            self.draining = True
            log.info("stopped")
            return
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
    service gets the runtime's token check and schema access levels (services/runtime/auth.py).
    With more than one worker (config.workers), this process supervises that many copies
    of itself (workers.py) and opens none of the resources."""
    setup_logging(config.name, config.log_level)
    role = workers.role()
    count = workers.worker_count(config.workers)
    if role is None and count > 1:
        supervisor = workers.Supervisor(
            config.name,
            count,
            config.host,
            config.grpc_port,
            config.metrics_port,
            start_workers_metrics_server,
        )
        return await supervisor.run()
    if auth is None:
        from services.runtime.auth import RuntimeAuth

        auth = RuntimeAuth.from_env(config.name)
        resources = [*resources, auth]
    tracing.install(config.name)
    app = App(config, handlers, resources, tasks, metrics=metrics, auth=auth, role=role)
    try:
        await app.run()
    finally:
        tracing.shutdown()  # flush the last spans
    return app.exit_code


def run(main: Callable[[], Awaitable[int | None]]) -> None:
    """Entry point of every main.py: uvloop when available, config errors exit 2 naming the
    variable (no stack trace), otherwise the code `main` returns."""
    if workers.in_worker():
        workers.die_with_supervisor()
        workers.ignore_signals()  # from the first instruction: the supervisor relays them
        workers.use_multiprocess_metrics()
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
