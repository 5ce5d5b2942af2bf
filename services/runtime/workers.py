"""Worker processes: `<SERVICE>_WORKERS` copies of one service serving one port, so a service
uses every core (a Python process uses one).

`serve()` with workers > 1 makes the first process a supervisor: it has run main() up to
serve() (config checked, migrations applied: `migrate()` is a no-op in workers), then
starts N copies of its own command line. Each copy runs main() again and serves the gRPC
port with SO_REUSEPORT (the kernel spreads connections over the workers). The supervisor:

- answers /metrics for all of them (prometheus_client multiprocess mode: one
  PROMETHEUS_MULTIPROC_DIR per supervisor, cleaned at start, `mark_process_dead` when a
  worker exits, so counters of a dead worker still count and its gauges go);
- stops them: SIGTERM/SIGINT are passed on over each worker's control pipe (first: drain,
  second: close now). Workers ignore the signals themselves, so `kill` of the process
  group (stack down) drains once, not twice; the pipe's EOF (the supervisor was killed)
  makes a worker exit at once, as the whole service would have;
- starts a worker again if it exits on its own (a background task died, a crash), and
  gives up (stopping the others) when workers keep dying: 5 exits in 60 s, or exit code 2
  (a configuration error, which a restart cannot fix).

Background tasks run in worker 0 only (an outbox relay, a Kafka consumer, a sweeper: once
per service, as before); `per_process(task)` marks one that each worker needs for its own
state (e.g. reloading signing keys). Resources (pools, caches, listeners) open per worker.

The default worker count is the cores this process may use: its CPU affinity, capped by
the cgroup v2 CPU quota (a container limited to 1.5 CPUs gets 2). Imports the stdlib,
prometheus_client and aiohttp only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("services.runtime.workers")

ENV_INDEX = "SHOPMESH_WORKER"  # this process's worker index (absent: not a worker)
ENV_COUNT = "SHOPMESH_WORKER_COUNT"
ENV_CONTROL_FD = "SHOPMESH_WORKER_CONTROL_FD"
ENV_GRPC_PORT = "SHOPMESH_WORKER_GRPC_PORT"
ENV_PARENT = "SHOPMESH_WORKER_PARENT"  # the supervisor's pid
ENV_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"

DRAIN, CLOSE_NOW = b"d", b"c"
CRASH_LOOP = (5, 60.0)  # this many unplanned exits within this many seconds: give up
RESTART_DELAY_S = 0.5
CONFIG_ERROR_EXIT = 2  # runtime.server.run's exit code for a ConfigError


# ---------------------------------------------------------------- how many


def available_cores(
    affinity: Callable[[], int] | None = None,
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    own_cgroup: Path = Path("/proc/self/cgroup"),
) -> int:
    """Cores this process may run on: CPU affinity (taskset, cpusets), capped by the cgroup
    v2 quota of its cgroup (`cpu.max`, what a Kubernetes CPU limit sets), rounded up."""
    try:
        cores = affinity() if affinity else len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(cgroup_root, own_cgroup)
    if quota is not None:
        cores = min(cores, quota)
    return max(1, cores)


def _cgroup_cpu_quota(root: Path, own_cgroup: Path) -> int | None:
    try:
        lines = own_cgroup.read_text().splitlines()
    except OSError:
        return None
    rel = next((ln.split("::", 1)[1] for ln in lines if ln.startswith("0::")), None)
    if rel is None:
        return None  # cgroup v1: no quota read (affinity alone)
    group = root / rel.lstrip("/")
    while True:  # the nearest limit up the tree applies
        try:
            quota, period = (group / "cpu.max").read_text().split()[:2]
            if quota != "max":
                return max(1, math.ceil(int(quota) / int(period)))
        except (OSError, ValueError):
            pass
        if group == root or root not in group.parents:
            return None
        group = group.parent


def worker_count(configured: int) -> int:
    """`<SERVICE>_WORKERS`: N as given, 0 = one per available core."""
    return configured if configured > 0 else available_cores()


# ---------------------------------------------------------------- inside a worker


@dataclass(frozen=True)
class Role:
    """What a worker process knows about itself (from its environment)."""

    index: int
    count: int
    control_fd: int
    grpc_port: int

    @property
    def runs_tasks(self) -> bool:
        return self.index == 0


def role(environ: Mapping[str, str] | None = None) -> Role | None:
    """This process's worker role, or None for a supervisor or a single-process service."""
    env = os.environ if environ is None else environ
    if ENV_INDEX not in env:
        return None
    return Role(
        int(env[ENV_INDEX]), int(env[ENV_COUNT]), int(env[ENV_CONTROL_FD]), int(env[ENV_GRPC_PORT])
    )


def in_worker() -> bool:
    return ENV_INDEX in os.environ


def metrics_dir() -> str:
    """Where this worker's prometheus_client files go (set by its supervisor)."""
    return os.environ[ENV_METRICS_DIR]


def use_multiprocess_metrics() -> None:
    """prometheus_client's multiprocess values with this process's pid read once: by
    default every metric update calls getpid() to notice a fork (a syscall per update,
    ~2 us here), and a worker never forks."""
    from prometheus_client import values

    pid = os.getpid()
    values.ValueClass = values.MultiProcessValue(lambda: pid)


def _pdeathsig() -> Callable[[], None] | None:
    """A preexec function setting PR_SET_PDEATHSIG to SIGKILL in the new worker (between
    fork and exec), so the kernel kills a worker whose supervisor dies, even one still
    importing; None where there is no prctl (the control pipe's EOF alone then)."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(1, sigkill, 0, 0, 0)  # PR_SET_PDEATHSIG

    return preexec


def die_with_supervisor() -> None:
    """A worker whose supervisor died between fork and prctl exits at once."""
    if os.getppid() != int(os.environ.get(ENV_PARENT, os.getppid())):
        os._exit(1)


def ignore_signals() -> None:
    """A worker leaves SIGTERM/SIGINT to its supervisor (which passes them on once)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def watch_control(fd: int, on_command: Callable[[bytes], None]) -> None:
    """Call `on_command(DRAIN | CLOSE_NOW)` for what the supervisor writes on the control
    pipe. Its EOF means the supervisor died without stopping its workers (SIGKILL, a crash):
    the worker exits at once, so the service dies as a whole, as a single process would."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            log.error("supervisor gone, exiting")
            os._exit(1)
        for byte in data:
            on_command(bytes([byte]))

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)


# ---------------------------------------------------------------- the supervisor


def check_port_free(host: str, port: int) -> int:
    """Bind host:port without SO_REUSEPORT (fails if anything, ours or not, holds it), and
    return the port (a free one for 0). Workers bind it with SO_REUSEPORT after this."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return int(s.getsockname()[1])


def _remove_orphans(parent: Path, prefix: str) -> None:
    """Directories of earlier supervisors of this service that were killed (SIGKILL leaves
    its directory behind): `<prefix><pid>-*` whose pid is gone."""
    for path in parent.glob(f"{prefix}*"):
        try:
            pid = int(path.name[len(prefix) :].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, PermissionError):
            continue  # not ours, or someone else's live process


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process
    control: int  # write end of the control pipe
    started: float


class Supervisor:
    """Starts, watches and stops the workers of one service, and serves their /metrics."""

    def __init__(
        self,
        name: str,
        count: int,
        host: str,
        grpc_port: int,
        metrics_port: int,
        serve_metrics: Callable[[Path, str, int], Awaitable[Any]],
        argv: list[str] | None = None,
    ) -> None:
        self.name = name
        self.count = count
        self.host = host
        self.grpc_port = grpc_port
        self.metrics_port = metrics_port
        self._serve_metrics = serve_metrics
        self.argv = argv or [sys.executable, *sys.orig_argv[1:]]
        self.workers: dict[int, _Worker] = {}
        self.stopping = 0  # signals seen
        self.exit_code = 0
        self._exits: list[float] = []
        self._changed = asyncio.Event()
        self._watchers: set[asyncio.Task[None]] = set()
        self._preexec = _pdeathsig()
        self._own_dir = False
        self.metrics_dir = Path()

    def _prepare_metrics_dir(self) -> None:
        given = os.environ.get(ENV_METRICS_DIR)
        if given:
            self.metrics_dir = Path(given)
            self.metrics_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.metrics_dir.glob("*"):  # a previous run's files: not ours
                if stale.is_file():
                    stale.unlink()
        else:
            prefix = f"shopmesh-{self.name}-metrics-"
            _remove_orphans(Path(tempfile.gettempdir()), prefix)
            self.metrics_dir = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
            self._own_dir = True

    async def _spawn(self, index: int) -> None:
        read_fd, write_fd = os.pipe()
        env = {
            **os.environ,
            ENV_INDEX: str(index),
            ENV_COUNT: str(self.count),
            ENV_CONTROL_FD: str(read_fd),
            ENV_GRPC_PORT: str(self.grpc_port),
            ENV_PARENT: str(os.getpid()),
            ENV_METRICS_DIR: str(self.metrics_dir),
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                env=env,
                pass_fds=(read_fd,),
                stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=self._preexec,
            )
        finally:
            os.close(read_fd)
        self.workers[index] = _Worker(index, proc, write_fd, time.monotonic())
        log.info("worker started", extra={"fields": {"worker": index, "worker_pid": proc.pid}})
        task = asyncio.ensure_future(self._watch(self.workers[index]))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _watch(self, worker: _Worker) -> None:
        code = await worker.proc.wait()
        with contextlib.suppress(OSError):
            os.close(worker.control)
        self._worker_gone(worker.proc.pid)
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        if not self.stopping:
            log.error(
                "worker exited",
                extra={"fields": {"worker": worker.index, "worker_pid": worker.proc.pid,
                                  "exit_code": code}},
            )  # fmt: skip
            now = time.monotonic()
            self._exits = [t for t in self._exits if now - t < CRASH_LOOP[1]] + [now]
            if code == CONFIG_ERROR_EXIT or len(self._exits) >= CRASH_LOOP[0]:
                self.exit_code = code or 1
                self.stop()
            else:
                await asyncio.sleep(RESTART_DELAY_S)
                if not self.stopping:
                    await self._spawn(worker.index)
        self._changed.set()

    def _worker_gone(self, pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(self.metrics_dir))
        # Gauges without a live mode (a service's own, summed per worker by the collector)
        # and the worker's snapshot of its scrape-time figures belong to it alone.
        for path in (*self.metrics_dir.glob(f"gauge_all_{pid}.db"),
                     *self.metrics_dir.glob(f"custom_{pid}.prom")):  # fmt: skip
            path.unlink(missing_ok=True)

    def _tell(self, command: bytes) -> None:
        for worker in list(self.workers.values()):
            with contextlib.suppress(OSError):
                os.write(worker.control, command)

    def stop(self) -> None:
        """First call: every worker drains; later calls: they close now."""
        self.stopping += 1
        self._tell(DRAIN if self.stopping == 1 else CLOSE_NOW)
        self._changed.set()

    async def run(self) -> int:
        self.grpc_port = check_port_free(self.host, self.grpc_port)
        self._prepare_metrics_dir()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        runner = None
        try:
            runner = await self._serve_metrics(self.metrics_dir, self.host, self.metrics_port)
            for index in range(self.count):
                await self._spawn(index)
            log.info(
                "supervising",
                extra={"fields": {"workers": self.count, "grpc": f"{self.host}:{self.grpc_port}",
                                  "metrics_dir": str(self.metrics_dir)}},
            )  # fmt: skip
            while self.workers or not self.stopping:
                self._changed.clear()
                await self._changed.wait()
        finally:
            if self.workers:  # an error in the supervisor itself: take the workers along
                self._tell(CLOSE_NOW)
                await asyncio.gather(*(w.proc.wait() for w in self.workers.values()))
            if runner is not None:
                await runner.cleanup()
            if self._own_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
            log.info("stopped", extra={"fields": {"exit_code": self.exit_code}})
        return self.exit_code

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info(
            "signal %s: %s", sig.name, "workers draining" if not self.stopping else "closing now"
        )
        self.stop()
