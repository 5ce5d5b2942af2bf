"""Run a demo-data loader the way `make up` does (`python -m <module>` from the repo root,
stack/components.py `demo_data`) and fingerprint the rows it owns, to prove a rerun is a
no-op."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg

from stack import postgres
from stack.model import REPO_ROOT


def run(module: str) -> str:
    """The loader's stdout; fails the test with its stderr if it exits non-zero."""
    done = subprocess.run(
        [sys.executable, "-m", module],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "SHOPMESH_ENV": "dev"},
        timeout=120,
    )
    assert done.returncode == 0, f"{module} failed:\n{done.stderr}"
    return done.stdout


async def fingerprint(dsn: str, *queries: str) -> list[list[tuple]]:
    """Every row of each query, xmin included where the query selects it: an UPDATE that
    rewrites a row with the same values still changes its xmin."""
    conn = await asyncpg.connect(dsn)
    try:
        return [[tuple(r) for r in await conn.fetch(q)] for q in queries]
    finally:
        await conn.close()


async def replica_caught_up(database: str, timeout_s: float = 30) -> None:
    """Wait until the replica replayed everything the primary has now (a loader's commits),
    so a test reading without an LSN sees the demo data on the replica."""
    primary = await asyncpg.connect(postgres.dsn(database))
    replica = await asyncpg.connect(postgres.dsn(database, replica=True))
    try:
        target = await primary.fetchval("SELECT pg_current_wal_lsn()")
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (await replica.fetchval("SELECT pg_last_wal_replay_lsn()")) < target:
            assert asyncio.get_running_loop().time() < deadline, "replica did not catch up"
            await asyncio.sleep(0.02)
    finally:
        await primary.close()
        await replica.close()
