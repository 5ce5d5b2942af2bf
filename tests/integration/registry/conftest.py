"""A real registry server process on real PostgreSQL (the stack's primary, database
`registry`), isolated in its own PostgreSQL schema so tests never touch the stack's data."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RegistryProcess:
    """`python -m registry serve` as a child process; stop()/start() keep the same DB."""

    def __init__(self, dsn: str, pg_schema: str, log: Path) -> None:
        self.dsn, self.pg_schema, self.log = dsn, pg_schema, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "REGISTRY_DATABASE_URL": self.dsn,
            "REGISTRY_DATABASE_SCHEMA": self.pg_schema,
            "REGISTRY_PORT": str(self.port),
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "registry", "serve"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"registry not up: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.proc = None


async def _drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def registry_server(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    stack.require("postgres-primary")
    dsn = stack.pg_dsn("registry")
    pg_schema = f"regtest_{uuid.uuid4().hex[:10]}"
    server = RegistryProcess(dsn, pg_schema, tmp_path_factory.mktemp("registry") / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        asyncio.run(_drop_schema(dsn, pg_schema))
