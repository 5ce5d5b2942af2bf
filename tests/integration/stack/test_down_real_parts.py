"""`make down` (`python -m stack down`) leaves no process of ours behind, with the real
parts: PostgreSQL primary + replica, Kafka, FerretDB and Envoy, brought up by the CLI on a
private state dir and private ports beside the shared stack (never touching it)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from stack.model import REPO_ROOT

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]

PARTS = ["postgres-primary", "postgres-replica", "kafka", "ferretdb", "envoy"]
PORT_VARS = [
    "SHOPMESH_PG_PRIMARY_PORT",
    "SHOPMESH_PG_REPLICA_PORT",
    "SHOPMESH_KAFKA_PORT",
    "SHOPMESH_KAFKA_CONTROLLER_PORT",
    "SHOPMESH_FERRETDB_PORT",
    "SHOPMESH_FERRETDB_DEBUG_PORT",
    # Envoy on private ports: the runner renders the generator's config for them.
    "SHOPMESH_ENVOY_PORT",
    "SHOPMESH_ENVOY_INTERNAL_PORT",
    "SHOPMESH_ENVOY_ADMIN_PORT",
]


def _stat(pid: int) -> list[str] | None:
    """Fields after the command name of /proc/<pid>/stat; None if gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def in_groups(pgids: set[int]) -> dict[int, str]:
    """Live pids whose process group is one of `pgids`, with their command line."""
    found = {}
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None and int(fields[2]) in pgids:
            found[pid] = _cmdline(pid)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def mentioning(state: Path) -> dict[int, str]:
    """Live pids whose command line, working dir or environment names the state dir: a
    process that left our groups (setsid, double fork) is still caught."""
    needle = str(state)
    found = {}
    for pid in _pids():
        if pid == os.getpid() or _stat(pid) is None:
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            env = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            cwd, env = "", ""
        cmd = _cmdline(pid)
        if needle in cmd or cwd.startswith(needle) or f"SHOPMESH_STATE_DIR={needle}" in env:
            found[pid] = cmd
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stack_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_down_leaves_no_process_of_any_real_part(stack):
    # Not tmp_path: the postgres OS user must traverse the path to its data directory.
    state = Path(tempfile.mkdtemp(prefix="shopmesh-down-", dir="/tmp")).resolve()
    state.chmod(0o755)
    env = {**os.environ, "SHOPMESH_STATE_DIR": str(state)}
    env.update({var: str(free_port()) for var in PORT_VARS})
    groups: set[int] = set()
    try:
        up = stack_cli(env, "up", "--only", ",".join(PARTS))
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        records = {p.stem: json.loads(p.read_text()) for p in (state / "run").glob("*.pid")}
        assert set(PARTS) <= set(records), records.keys()
        groups = {r["pid"] for r in records.values()}
        before = in_groups(groups)
        # Each part's group is alive, and the state-dir scan sees them (it can fail).
        for name, rec in records.items():
            assert rec["pid"] in before, f"{name} not running after up"
        assert set(mentioning(state)) & set(before)

        down = stack_cli(env, "down")
        assert down.returncode == 0, down.stdout + down.stderr

        assert in_groups(groups) == {}, "left in a recorded process group"
        assert mentioning(state) == {}, "left outside the groups, still ours"
        assert list((state / "run").glob("*.pid")) == []
        for p in [int(env[var]) for var in PORT_VARS]:  # nothing listens
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", p))
    finally:
        # Whatever a failure left, stop it: our groups only, by pgid.
        stack_cli(env, "down")
        for pgid in {int(_stat(p)[2]) for p in in_groups(groups) if _stat(p)} & groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        shutil.rmtree(state, ignore_errors=True)
