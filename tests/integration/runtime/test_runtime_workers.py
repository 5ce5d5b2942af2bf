"""A service with <SERVICE>_WORKERS=2, as real processes (tests/integration/runtime/
worker_service.py): one port served by two pids, one /metrics summing both, background
tasks once per service (or per process when marked), SIGTERM draining an in-flight call,
a killed worker replaced while its counts stay counted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from prometheus_client.parser import text_string_to_metric_families

from bench.common import free_port
from shop.product.v1 import product_grpc
from shop.product.v1 import product_pb2 as pb

ROOT = Path(__file__).resolve().parents[3]
METHOD = "/shop.product.v1.ProductService/GetProduct"


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    grpc_port: int
    metrics_port: int
    dir: Path
    log: Path

    def lines(self) -> list[dict]:
        out = []
        for raw in self.log.read_text().splitlines():
            if raw.startswith("{"):
                out.append(json.loads(raw))
        return out


async def call(port: int, product_id: str = "p-0001") -> int:
    """One GetProduct on a connection of its own; returns the pid that served it."""
    channel = Channel("127.0.0.1", port)
    try:
        reply = await product_grpc.ProductServiceStub(channel).GetProduct(
            pb.GetProductRequest(id=product_id), timeout=10
        )
    finally:
        channel.close()
    return int(reply.product.name)


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def ok_count(samples: dict) -> float:
    return samples.get(("rpc_requests_total", (("code", "OK"), ("method", METHOD))), 0.0)


def exists(path: str) -> bool:
    return Path(path).exists()


def live(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


async def serving_pids(port: int, want: int, limit_s: float = 30) -> set[int]:
    """Call on fresh connections until `want` distinct pids answered (SO_REUSEPORT hashes
    each connection to a worker)."""
    pids: set[int] = set()
    deadline = time.monotonic() + limit_s
    while len(pids) < want:
        assert time.monotonic() < deadline, f"only pids {pids} answered"
        try:
            pids.add(await call(port))
        except (OSError, GRPCError, StreamTerminatedError):
            # still starting, or a connection queued on a worker that was just killed
            await asyncio.sleep(0.1)
    return pids


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    grpc_port, metrics_port = free_port(), free_port()
    log = tmp_path / "service.log"
    env = {
        **os.environ,
        "WORKERTEST_WORKERS": "2",
        "WORKERTEST_GRPC_PORT": str(grpc_port),
        "WORKERTEST_METRICS_PORT": str(metrics_port),
        "WORKERTEST_DRAIN_TIMEOUT_S": "10",
        "WORKERTEST_DIR": str(tmp_path),
        "WORKERTEST_SLOW_S": "1.5",
        "SHOPMESH_TRACE_DIR": str(tmp_path / "traces"),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.runtime.worker_service"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    svc = Service(proc, grpc_port, metrics_port, tmp_path, log)
    try:
        yield svc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def test_two_workers_serve_one_port_and_metrics_sum_both(service: Service) -> None:
    pids = await serving_pids(service.grpc_port, 2)
    assert service.proc.pid not in pids  # the supervisor serves no calls itself
    served: dict[int, int] = {}
    for _ in range(40):
        pid = await call(service.grpc_port)
        served[pid] = served.get(pid, 0) + 1
    with pytest.raises(GRPCError) as err:
        await call(service.grpc_port, "p-4040")
    assert err.value.status is Status.NOT_FOUND
    assert set(served) <= pids
    samples = await scrape(service.metrics_port)
    # every OK call of both workers, the warm-up calls included, counted once
    warmup = len([ln for ln in service.lines() if ln.get("msg") == "rpc"]) - 40 - 1
    assert ok_count(samples) == 40 + warmup
    not_found = ("rpc_requests_total", (("code", "NOT_FOUND"), ("method", METHOD)))
    assert samples[not_found] == 1
    assert samples[("rpc_duration_seconds_count", (("method", METHOD),))] == 41 + warmup
    # a scrape-time figure of each worker, added up by the supervisor
    assert samples[("workertest_processes", ())] == 2
    # a labelled family nothing counted yet is still listed, as a single process lists it
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{service.metrics_port}/metrics")).text
    assert "# TYPE kafka_produced_total counter" in text
    # the access log names the pid of each line; both workers wrote some
    rpc_lines = [ln for ln in service.lines() if ln.get("msg") == "rpc"]
    assert {ln["pid"] for ln in rpc_lines} == pids
    # background tasks: `once` in one worker, `each` in both
    assert len((service.dir / "once").read_text().split()) == 1
    assert {int(p) for p in (service.dir / "each").read_text().split()} == pids


async def test_sigterm_drains_the_call_in_flight_then_every_process_exits(
    service: Service,
) -> None:
    pids = await serving_pids(service.grpc_port, 2)
    slow = asyncio.ensure_future(call(service.grpc_port, "slow"))
    await asyncio.sleep(0.3)  # the slow call is being served
    service.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    # the listeners are closed: a new connection is refused or told UNAVAILABLE
    with pytest.raises((OSError, GRPCError)) as err:
        await call(service.grpc_port)
    if isinstance(err.value, GRPCError):
        assert err.value.status is Status.UNAVAILABLE
    assert await slow in pids  # the call in flight finished, answered by a worker
    code = await asyncio.to_thread(service.proc.wait, 20)
    assert code == 0
    assert not any(live(p) for p in pids)
    # the supervisor's prometheus_client directory went with it
    (sup,) = [ln for ln in service.lines() if ln.get("msg") == "supervising"]
    assert not exists(sup["metrics_dir"])


async def test_a_killed_worker_is_replaced_and_its_counts_stay(service: Service) -> None:
    pids = await serving_pids(service.grpc_port, 2)
    for _ in range(10):
        await call(service.grpc_port)
    before = ok_count(await scrape(service.metrics_port))
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        now_pids = await serving_pids(service.grpc_port, 1)
        survivors = {p for p in pids if live(p)}
        if len(survivors) == 1:
            try:
                fresh = await serving_pids(service.grpc_port, 2, limit_s=10)
            except AssertionError:
                fresh = now_pids
            if len(fresh) == 2 and victim not in fresh:
                break
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        await asyncio.sleep(0.2)
    after = ok_count(await scrape(service.metrics_port))
    assert after >= before + 2  # the dead worker's calls still counted, the new ones too
    assert service.proc.poll() is None  # the service itself never went down


async def test_workers_die_with_a_killed_supervisor(service: Service) -> None:
    pids = await serving_pids(service.grpc_port, 2)
    service.proc.kill()  # SIGKILL to the supervisor alone, not to its process group
    await asyncio.to_thread(service.proc.wait, 10)
    deadline = time.monotonic() + 20
    while any(live(p) for p in pids):
        assert time.monotonic() < deadline, "workers outlived their supervisor"
        await asyncio.sleep(0.1)
    # nothing serves the port any more (refused, or reset by a listener closing under us)
    with pytest.raises((OSError, StreamTerminatedError)):
        await call(service.grpc_port)


async def test_sigterm_while_the_workers_start_stops_them_cleanly(service: Service) -> None:
    deadline = time.monotonic() + 30
    while not any(ln.get("msg") == "supervising" for ln in service.lines()):
        assert time.monotonic() < deadline, "the supervisor never started its workers"
        await asyncio.sleep(0.02)
    service.proc.send_signal(signal.SIGTERM)  # the workers are still importing
    assert await asyncio.to_thread(service.proc.wait, 30) == 0
    started = [ln["worker_pid"] for ln in service.lines() if ln.get("msg") == "worker started"]
    assert len(started) == 2 and not any(live(p) for p in started)
    # each worker stopped on the supervisor's word, wherever its start had got to
    stopped = {ln["pid"] for ln in service.lines() if ln.get("msg") == "stopped" and "pid" in ln}
    assert stopped == set(started)


async def test_workers_still_starting_die_with_a_killed_supervisor(service: Service) -> None:
    deadline = time.monotonic() + 30
    while len(started := [ln["worker_pid"] for ln in service.lines()
                          if ln.get("msg") == "worker started"]) < 2:  # fmt: skip
        assert time.monotonic() < deadline, "the supervisor never started its workers"
        await asyncio.sleep(0.02)
    service.proc.kill()  # the workers are importing: no control pipe is read yet
    await asyncio.to_thread(service.proc.wait, 10)
    deadline = time.monotonic() + 5
    while any(live(p) for p in started):
        assert time.monotonic() < deadline, "workers outlived their supervisor"
        await asyncio.sleep(0.05)
