"""Run a demo-data loader the way `make up` does (`python -m <module>` from the repo root,
stack/components.py `demo_data`) and fingerprint the rows it owns, to prove a rerun is a
no-op."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg

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
