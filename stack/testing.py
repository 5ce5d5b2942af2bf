"""Test-side API of the stack: bring parts up once per session, expose addresses, and stop,
start or crash single components (the reliability suite kills Kafka, the replica, ...).

Used by the `stack` fixture in tests/conftest.py:

    def test_x(stack):
        stack.require("postgres", "kafka")
        dsn = stack.pg_dsn("product")            # primary
        ro = stack.pg_dsn("product", replica=True)
        stack.kill("kafka"); stack.start("kafka")
"""

from __future__ import annotations

import time

from stack import ferretdb, gateway, kafka, postgres
from stack.components import SMTP_HTTP_PORT, SMTP_PORT
from stack.runner import Stack, StackError


class StackHandle:
    """One per test session; `require` is cheap once a part is up (reuses running ones)."""

    def __init__(self, stack: Stack | None = None) -> None:
        self.stack = stack or Stack.default()
        self._up: set[str] = set()

    # ------------------------------------------------------------ lifecycle

    def require(self, *names: str) -> StackHandle:
        """Start `names` (prefixes allowed: "postgres") plus dependencies, unless already up.
        Fails the test with the component's log tail if a part cannot start."""
        missing = [n for n in names if n not in self._up]
        if missing:
            try:
                self.stack.up(missing)
            except StackError as exc:
                raise RuntimeError(exc.render()) from None
            self._up.update(missing)
        return self

    def stop(self, name: str) -> None:
        """Graceful stop (SIGTERM, or SIGINT for PostgreSQL)."""
        self.stack.stop(self.stack.by_name(name))

    def kill(self, name: str) -> None:
        """Crash: SIGKILL the component's whole process group."""
        if not self.stack.procs.kill9(name):
            raise RuntimeError(f"{name} is not running (or was not started by this stack)")

    def start(self, name: str) -> None:
        """Start one component again (its dependencies must be up) and wait for health."""
        try:
            self.stack.start(self.stack.by_name(name))
        except StackError as exc:
            raise RuntimeError(exc.render()) from None

    def restart(self, name: str) -> None:
        self.stop(name)
        self.start(name)

    def healthy(self, name: str) -> bool:
        return self.stack.procs.running(name) is not None and self.stack.by_name(name).health()

    def wait_healthy(self, name: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy(name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not healthy after {timeout}s")
            time.sleep(0.1)

    def pid(self, name: str) -> int | None:
        rec = self.stack.procs.running(name)
        return rec.pid if rec else None

    # ------------------------------------------------------------ addresses

    def pg_dsn(self, database: str, replica: bool = False, driver: str = "postgresql") -> str:
        """App-role DSN, e.g. pg_dsn("product", driver="postgresql+asyncpg")."""
        return postgres.dsn(database, replica, driver)

    def pg_admin_dsn(self, database: str = "postgres", replica: bool = False) -> str:
        """Superuser DSN (trusted on loopback), for test setup/teardown only."""
        p = postgres.replica_port() if replica else postgres.primary_port()
        return f"postgresql://postgres@127.0.0.1:{p}/{database}"

    @property
    def kafka_bootstrap(self) -> str:
        return kafka.bootstrap_servers()

    def mongo_url(self, database: str = "") -> str:
        return ferretdb.mongo_url(database)

    @property
    def smtp(self) -> tuple[str, int]:
        return ("127.0.0.1", SMTP_PORT)

    @property
    def smtp_http(self) -> str:
        return f"http://127.0.0.1:{SMTP_HTTP_PORT}"

    @property
    def envoy_url(self) -> str:
        return f"http://127.0.0.1:{gateway.envoy_port()}"

    @property
    def envoy_admin_url(self) -> str:
        return f"http://127.0.0.1:{gateway.envoy_admin_port()}"

    @property
    def nginx_url(self) -> str:
        return f"http://127.0.0.1:{gateway.nginx_port()}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{gateway.prometheus_port()}"
