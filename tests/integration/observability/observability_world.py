"""The private world of the observability tests: product and notification processes with
their own ports, trace dir, topics and consumer group, a private Prometheus scraping them,
and what one traced RPC and one traced event left behind (the fixtures are conftest.py's)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from stack.model import REPO_ROOT

REGISTRY = "http://127.0.0.1:8085"
LIST_PRODUCTS = "/shop.product.v1.ProductService/ListProducts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], object], within: float, what: str) -> object:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        time.sleep(0.25)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    metrics_port: int = 0
    grpc_port: int = 0

    def lines(self) -> list[dict]:
        out = []
        for raw in self.log.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                with contextlib.suppress(ValueError):  # a line cut by a crash
                    out.append(json.loads(raw))
        return out


def spawn(name: str, argv: list[str], env: dict[str, str], log: Path) -> Proc:
    handle = log.open("wb")
    popen = subprocess.Popen(
        argv, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT
    )
    return Proc(name, popen, log)


@dataclass
class World:
    tmp: Path
    product: Proc
    notification: Proc
    prometheus_url: str
    topic: str

    def query(self, promql: str) -> float:
        r = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
        r.raise_for_status()
        result = r.json()["data"]["result"]
        return sum(float(s["value"][1]) for s in result)


@dataclass
class Exercised:
    rpc_trace_id: str
    event_trace_id: str
    event_id: str
    header_traceparent: str
