"""What the stack's own parts spent, read around a window: FerretDB's command counters,
PostgreSQL's transaction and tuple counters per database, and the CPU of each part of the
local stack from its pid files and their descendants (/proc), so other engineers'
processes never count.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path

FERRETDB_METRICS = "http://127.0.0.1:8089/debug/metrics"
PG_DATABASES = ("ferretdb", "product", "user", "notification", "auth")
# ---------------------------------------------------------------- counters


def ferretdb_commands() -> dict[str, float]:
    """FerretDB's request counters by command (cumulative)."""
    with urllib.request.urlopen(FERRETDB_METRICS, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'ferretdb_client_requests_total\{command="([^"]+)"[^}]*\} ([\d.e+]+)', line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def pg_counters() -> dict[str, float]:
    """Per database: transactions (commit + rollback) and rows written/read (cumulative)."""
    from stack import postgres

    cols = "xact_commit + xact_rollback, tup_inserted + tup_updated + tup_deleted, tup_fetched"
    names = ",".join(f"'{d}'" for d in PG_DATABASES)
    sql = f"SELECT datname, {cols} FROM pg_stat_database WHERE datname IN ({names})"
    out: dict[str, float] = {}
    for line in postgres.psql(sql, "postgres").splitlines():
        db, xacts, written, fetched = line.split("|")
        out[f"{db}.transactions"] = float(xacts)
        out[f"{db}.rows_written"] = float(written)
        out[f"{db}.rows_fetched"] = float(fetched)
    return out


def counters() -> dict[str, float]:
    return {
        **{f"ferretdb.{k}": v for k, v in ferretdb_commands().items()},
        **{f"pg.{k}": v for k, v in pg_counters().items()},
    }


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


# ---------------------------------------------------------------- the stack's own processes

TICK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def _ticks(pid: int) -> int:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, IndexError, ValueError):
        return 0


def stack_cpu() -> dict[str, float]:
    """CPU seconds so far of the stack's own processes (the pid files `make up` keeps, and
    their descendants), by component; PostgreSQL's backends by database as cpu_by_part.py
    names them. Other engineers' private servers on this machine (a benchmark's product
    workers, a test's order service) are not in it, as they are in cpu_by_part.py's parts."""
    from stack.model import state_dir

    kids = _children()
    out: dict[str, float] = {}
    for pidfile in (state_dir() / "run").glob("*.pid"):
        try:
            root = int(json.loads(pidfile.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
        name = pidfile.stem
        todo = [root]
        while todo:
            pid = todo.pop()
            todo += kids.get(pid, [])
            part = name
            if name.startswith("postgres"):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                words = cmd.split()
                cluster = "pg-replica" if name.endswith("replica") else "pg-primary"
                db = words[2] if cmd.startswith("postgres:") and len(words) > 3 else "background"
                part = f"{cluster}:{db if '(' in cmd else 'background'}"
            out[part] = out.get(part, 0.0) + _ticks(pid) / TICK
    return out
