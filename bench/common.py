"""Shared pieces of every benchmark: bounded load loops, percentiles, loud failure on errors,
CPU pinning, machine/version capture and the results file.

- `closed_loop(call, concurrency, seconds, max_calls)`: N workers, each awaiting `call(w, i)`
  back to back, for at most `seconds` (after `warmup`) and at most `max_calls` in total.
- `open_loop(call, rate, seconds, max_calls)`: calls started on a fixed schedule; latency is
  measured from the *scheduled* start (no coordinated omission).
- `Result.require_no_errors()` (or `check=True`, the default) raises `BenchFailed` with the
  first error seen: a benchmark that counts failures as throughput lies.
- `pinned(cmd, cpu)` prefixes `taskset -c CPU`; `pin_self(cpu)`; `proc_cpu_s(pid)` reads
  /proc/<pid>/stat so a result can say how busy the server was.
- `machine()` records CPU model, cores, kernel, load average and package versions;
  `write_result(name, data)` stores bench/results/<name>.json with it.

Loopback only: `check_loopback(host)` refuses any other target.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

Call = Callable[[int, int], Awaitable[Any]]


class BenchFailed(RuntimeError):
    """A benchmark saw errors or could not set up: its numbers must not be used."""


def check_loopback(host: str) -> str:
    if host not in LOOPBACK:
        raise BenchFailed(f"benchmarks only send traffic to 127.0.0.1, not {host!r}")
    return host


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def median_range(values: Iterable[float], digits: int = 3) -> dict[str, float]:
    """{"median", "min", "max", "n"}: how every side-by-side figure is reported."""
    xs = [v for v in values if v == v]  # drop NaN
    if not xs:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "median": round(statistics.median(xs), digits),
        "min": round(min(xs), digits),
        "max": round(max(xs), digits),
        "n": len(xs),
    }


def fmt_range(r: dict[str, float], digits: int = 2) -> str:
    if r.get("n", 0) <= 1:
        return f"{r['median']:.{digits}f}"
    return f"{r['median']:.{digits}f} ({r['min']:.{digits}f}-{r['max']:.{digits}f})"


@dataclass
class Result:
    """One measured point. Latencies in ms; `errors` > 0 makes the point (and run) fail."""

    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    per_s: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    mean_ms: float = float("nan")
    max_ms: float = float("nan")
    first_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_samples(
        cls, latencies_s: list[float], errors: int, seconds: float, first_error: str = ""
    ) -> Result:
        xs = sorted(latencies_s)
        n = len(xs)
        return cls(
            calls=n,
            errors=errors,
            seconds=round(seconds, 3),
            per_s=round(n / seconds, 1) if seconds > 0 else 0.0,
            p50_ms=round(percentile(xs, 50) * 1000, 3) if n else float("nan"),
            p99_ms=round(percentile(xs, 99) * 1000, 3) if n else float("nan"),
            mean_ms=round(statistics.fmean(xs) * 1000, 3) if n else float("nan"),
            max_ms=round(xs[-1] * 1000, 3) if n else float("nan"),
            first_error=first_error,
        )

    def require_no_errors(self, what: str = "benchmark") -> Result:
        if self.errors:
            raise BenchFailed(
                f"{what}: {self.errors} errors out of {self.calls + self.errors} calls; "
                f"first: {self.first_error}"
            )
        if not self.calls:
            raise BenchFailed(f"{what}: no call completed")
        return self

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        if not d["first_error"]:
            d.pop("first_error")
        return {**d, **extra}


async def closed_loop(
    call: Call,
    concurrency: int,
    seconds: float,
    max_calls: int = 100_000,
    warmup: float = 0.5,
    check: bool = True,
    what: str = "closed loop",
) -> Result:
    """`concurrency` workers back to back. A call counts when it starts after the warm-up
    and before the end of the window; the window ends at `seconds` or at `max_calls`."""
    latencies: list[float] = []
    errors = 0
    first_error = ""
    now = time.perf_counter()
    measure_from = now + warmup
    stop_at = measure_from + seconds
    done_at = stop_at

    async def worker(w: int) -> None:
        nonlocal errors, first_error, done_at
        i = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at or len(latencies) + errors >= max_calls:
                done_at = min(done_at, t0)
                return
            try:
                await call(w, i)
            except Exception as exc:  # counted and reported, never swallowed silently
                if t0 >= measure_from:
                    errors += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
            else:
                if t0 >= measure_from:
                    latencies.append(time.perf_counter() - t0)
            i += 1

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    window = max(1e-9, min(done_at, stop_at) - measure_from)
    res = Result.from_samples(latencies, errors, window, first_error)
    res.extra["concurrency"] = concurrency
    return res.require_no_errors(what) if check else res


async def open_loop(
    call: Call,
    rate: float,
    seconds: float,
    max_calls: int = 100_000,
    check: bool = True,
    what: str = "open loop",
    max_in_flight: int = 2000,
) -> Result:
    """Start one call every 1/rate s regardless of completions; latency from the scheduled
    start, so a stalled server shows up in p99 instead of silently lowering the rate."""
    count = min(int(rate * seconds), max_calls)
    latencies: list[float] = []
    errors = 0
    first_error = ""
    in_flight: set[asyncio.Task[None]] = set()
    t_start = time.perf_counter()

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors, first_error
        try:
            await call(0, i)
        except Exception as exc:
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
        else:
            latencies.append(time.perf_counter() - scheduled)

    for i in range(count):
        scheduled = t_start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= max_in_flight:
            raise BenchFailed(f"{what}: {max_in_flight} calls in flight, target overloaded")
        task = asyncio.ensure_future(one(i, scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight, timeout=30)
    res = Result.from_samples(latencies, errors, time.perf_counter() - t_start, first_error)
    res.extra["target_rate"] = rate
    return res.require_no_errors(what) if check else res


# ---------------------------------------------------------------- CPU pinning


def cpus() -> int:
    return os.cpu_count() or 1


def can_pin() -> bool:
    return cpus() >= 2 and shutil.which("taskset") is not None


def pinned(cmd: Sequence[str], cpu: int) -> list[str]:
    """`taskset -c CPU cmd...` when the machine has a core to spare, else cmd unchanged."""
    return ["taskset", "-c", str(cpu), *cmd] if can_pin() else list(cmd)


def pin_self(cpu: int) -> None:
    if cpus() >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def pin_preexec(cpu: int) -> Callable[[], None] | None:
    """A Popen preexec_fn pinning the child to `cpu`, or None on a one-core machine."""
    if cpus() < 2 or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def start_product_service(cpu: int, log_level: str = "warning") -> tuple[Any, int]:
    """Load the demo catalog, then start a private product service (free ports, not the
    stack's) pinned to `cpu`; returns (process, gRPC port). Wait with wait_grpc_serving."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "services.product.demo"], cwd=ROOT, check=True)
    port = free_port()
    env = {
        **os.environ,
        "PRODUCT_GRPC_PORT": str(port),
        "PRODUCT_METRICS_PORT": str(free_port()),
        "PRODUCT_LOG_LEVEL": log_level,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.product.main"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.DEVNULL,
        preexec_fn=pin_preexec(cpu),
    )
    return proc, port


def proc_cpu_s(pid: int) -> float:
    """user+system CPU seconds of a process (children excluded), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ---------------------------------------------------------------- machine and results

PACKAGES = (
    "grpclib", "grpcio", "protobuf", "h2", "uvloop", "SQLAlchemy", "asyncpg", "aiokafka",
    "confluent-kafka", "aiohttp",
)  # fmt: skip


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": cpus(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "pinning": "taskset" if can_pin() else "none (fewer than 2 cores or no taskset)",
        "versions": {p: _version(p) for p in PACKAGES},
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    """bench/results/<name>.json with `when` and `machine` filled in."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    own = data.get("machine")
    out = {
        "benchmark": name,
        **data,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # a benchmark may add to the common description (not replace it with less)
        "machine": {**machine(), **own} if isinstance(own, dict) else machine(),
    }
    if isinstance(own, str):
        out["machine_note"] = own
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return path


def core_ticks() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) jiffies from /proc/stat (busy = all but idle and iowait)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *vals = line.split()
        if name.startswith("cpu") and name != "cpu":
            v = [int(x) for x in vals]
            out[int(name[3:])] = (sum(v) - v[3] - v[4], sum(v))
    return out


def git_head() -> str:
    """The short commit the working tree is on: results name what they measured."""
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


def record_entry(name: str, section: str, key: str, entry: dict[str, Any]) -> Path:
    """Keep `entry` as bench/results/<name>.json[section][key] (a named A/B or run), every
    other entry of the file untouched."""
    path = RESULTS / f"{name}.json"
    data = json.loads(path.read_text()) if path.exists() else {"benchmark": name}
    data.setdefault(section, {})[key] = entry
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def run_main(coro: Awaitable[Any]) -> Any:
    """asyncio.run on uvloop when present (the services run on it too)."""
    try:
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]


async def wait_grpc_serving(port: int, limit_s: float = 60) -> None:
    """Until the gRPC health service on 127.0.0.1:port says SERVING (or a timeout)."""
    from grpclib.client import Channel
    from grpclib.health.v1.health_grpc import HealthStub
    from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

    deadline = time.monotonic() + limit_s
    last = ""
    while time.monotonic() < deadline:
        channel = Channel("127.0.0.1", port)
        try:
            reply = await asyncio.wait_for(HealthStub(channel).Check(HealthCheckRequest()), 2)
            if reply.status == HealthCheckResponse.SERVING:
                return
            last = f"status {reply.status}"
        except Exception as exc:
            last = repr(exc)[:200]
        finally:
            channel.close()
        await asyncio.sleep(0.2)
    raise BenchFailed(f"server on 127.0.0.1:{port} not serving after {limit_s}s ({last})")


async def wait_port(port: int, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise BenchFailed(f"nothing listening on 127.0.0.1:{port} after {limit_s}s")
