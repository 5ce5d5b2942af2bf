"""Declarative model of the local stack: components, health checks and install requirements.

Holds data only (plus the health probes, which are tiny). Must not import the runner, so
`components.py` stays a readable list and the runner stays generic.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# ---------------------------------------------------------------- paths and ports

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("SHOPMESH_CACHE_DIR", Path.home() / ".cache" / "shopmesh"))


def state_dir() -> Path:
    """Where every component keeps data, logs and pid files (one dir, easy to wipe)."""
    return Path(os.environ.get("SHOPMESH_STATE_DIR", REPO_ROOT / ".stack")).resolve()


def port(env: str, default: int) -> int:
    """A fixed local port (schemas/topology.yaml), overridable by env so a private instance fits."""
    return int(os.environ.get(env, default))


# ---------------------------------------------------------------- health checks


class HealthCheck:
    """A probe answering 'is this component serving?'. Never raises."""

    description = "?"

    def __call__(self) -> bool:
        try:
            return self.probe()
        except Exception:
            return False

    def probe(self) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class Tcp(HealthCheck):
    port: int
    host: str = "127.0.0.1"

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"tcp {self.host}:{self.port}"

    def probe(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=1):
            return True


@dataclass(frozen=True)
class Http(HealthCheck):
    url: str
    ok_status: tuple[int, ...] = (200,)

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"http {self.url}"

    def probe(self) -> bool:
        req = urllib.request.Request(self.url, method="GET")
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return resp.status in self.ok_status
        except urllib.error.HTTPError as exc:
            return exc.code in self.ok_status


@dataclass(frozen=True)
class GrpcHealth(HealthCheck):
    """grpc.health.v1 Check via grpclib; falls back to TCP if grpclib's health stub is missing."""

    port: int
    service: str = ""
    host: str = "127.0.0.1"

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"grpc-health {self.host}:{self.port} {self.service!r}"

    def probe(self) -> bool:
        try:
            from grpclib.client import Channel
            from grpclib.health.v1.health_grpc import HealthStub
            from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
        except ImportError:
            return Tcp(self.port, self.host).probe()

        async def check() -> bool:
            channel = Channel(self.host, self.port)
            try:
                reply = await asyncio.wait_for(
                    HealthStub(channel).Check(HealthCheckRequest(service=self.service)), 2
                )
                return reply.status == HealthCheckResponse.SERVING
            finally:
                channel.close()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(check())
        # Called from async code (a test): run the probe on its own loop in a thread.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, check()).result()


@dataclass(frozen=True)
class Command(HealthCheck):
    """Healthy when a command exits 0 (e.g. pg_isready)."""

    argv: tuple[str, ...]

    @property
    def description(self) -> str:  # type: ignore[override]
        return " ".join(self.argv)

    def probe(self) -> bool:
        return (
            subprocess.run(self.argv, capture_output=True, timeout=5, check=False).returncode == 0
        )


@dataclass(frozen=True)
class Custom(HealthCheck):
    fn: Callable[[], bool]
    what: str = "custom"

    @property
    def description(self) -> str:  # type: ignore[override]
        return self.what

    def probe(self) -> bool:
        return bool(self.fn())


@dataclass(frozen=True)
class AllOf(HealthCheck):
    checks: tuple[HealthCheck, ...]

    @property
    def description(self) -> str:  # type: ignore[override]
        return " + ".join(c.description for c in self.checks)

    def probe(self) -> bool:
        return all(c() for c in self.checks)


# ---------------------------------------------------------------- install requirements


@dataclass(frozen=True)
class Apt:
    """Debian packages, installed in one apt-get call for all selected components."""

    packages: tuple[str, ...]
    present: Path  # a file whose existence proves the packages are installed


@dataclass(frozen=True)
class Step:
    """Any other install step (mvn, go build, pip): run `install` unless `present()`."""

    what: str
    present: Callable[[], bool]
    install: Callable[[], None]


Requirement = Apt | Step


# ---------------------------------------------------------------- component


@dataclass
class Component:
    """One process of the local stack.

    `command` is resolved lazily (a callable) because paths depend on the state dir and on
    files written by `prepare`. `prepare` runs after dependencies are healthy and before the
    process starts (write configs, init data dirs); `post_start` runs once it is healthy
    (create databases, topics). Both must be idempotent.
    """

    name: str
    command: Callable[[], Sequence[str]]
    health: HealthCheck
    depends_on: Sequence[str] = ()
    env: Mapping[str, str] | Callable[[], Mapping[str, str]] = field(default_factory=dict)
    requires: Sequence[Requirement] = ()
    prepare: Callable[[], None] | None = None
    post_start: Callable[[], None] | None = None
    user: str | None = None  # OS user to run as (postgres refuses to run as root)
    cwd: Path | None = None
    start_timeout: float = 60.0
    stop_signal: str = "SIGTERM"
    stop_timeout: float = 15.0
    # Signal only the leader (postgres: the postmaster must orchestrate its children).
    signal_group: bool = True
    info: Callable[[], str] | None = None  # one line for `status` (URL, DSN)
    # Envoy exits when its parent process exits (parent-death signal); such a process gets a
    # waiting /bin/sh as its parent, which lives in the same process group.
    needs_parent: bool = False
    # Generated config: a digest of what the process loaded. When it changes, `up` reloads
    # a running process (`reload_signal` to its leader, e.g. SIGHUP for NGINX) or restarts it.
    config_digest: Callable[[], str] | None = None
    reload_signal: str | None = None

    def resolved_env(self) -> dict[str, str]:
        env = self.env() if callable(self.env) else self.env
        return dict(env)
