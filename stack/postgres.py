"""PostgreSQL 15 primary + physical streaming replica (Debian packages, run as `postgres`).

Each server runs `postgres -D <dir>` directly (no pg_ctl) so the pid we record is the
postmaster's. Settings go on the command line, where they override postgresql.conf and
therefore also the copy that pg_basebackup gives the replica.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from stack.model import Apt, Command, Component, port, state_dir
from stack.runner import StackError, run_cmd
from topology import topology

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
APP_ROLE = "shopmesh"
APP_PASSWORD = "shopmesh"  # local dev only; k8s overlays take it from a Secret
# The services' databases (schemas/topology.yaml), the registry's and FerretDB's backend.
DATABASES = (
    *(s.postgres.database for s in topology().services if s.postgres),
    "registry",
    "ferretdb",
)
SLOT = "replica_5433"


def primary_port() -> int:
    return port("SHOPMESH_PG_PRIMARY_PORT", topology().infra("postgres").port("primary"))


def replica_port() -> int:
    return port("SHOPMESH_PG_REPLICA_PORT", topology().infra("postgres").port("replica"))


def dsn(database: str, replica: bool = False, driver: str = "postgresql") -> str:
    """DSN of the app role, e.g. dsn("product") or dsn("product", replica=True)."""
    p = replica_port() if replica else primary_port()
    return f"{driver}://{APP_ROLE}:{APP_PASSWORD}@127.0.0.1:{p}/{database}"


def _dir(kind: str) -> Path:
    return state_dir() / "postgres" / kind


def _as_postgres(argv: list[str], what: str) -> None:
    run_cmd(argv, what, state_dir() / "logs" / f"{what}.log", user=PG_USER, group=PG_USER)


def _own(path: Path) -> None:
    pw = pwd.getpwnam(PG_USER)
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    path.chmod(0o700)


def _ensure_user() -> None:
    try:
        pwd.getpwnam(PG_USER)
    except KeyError as exc:  # the Debian package creates it; a custom image might not
        raise StackError("postgres", f"OS user {PG_USER!r} missing after install") from exc


def psql(sql: str, database: str = "postgres") -> str:
    """Run SQL on the primary as the superuser (trusted on loopback); its output, unaligned."""
    argv = [
        str(PG_BIN / "psql"),
        "-h", "127.0.0.1", "-p", str(primary_port()), "-U", "postgres", "-d", database,
        "-v", "ON_ERROR_STOP=1", "-qAtc", sql,
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StackError("postgres-primary", f"psql failed: {proc.stderr.strip()}\nSQL: {sql}")
    return proc.stdout.strip()


def _server_argv(data: Path, p: int) -> list[str]:
    return [
        str(PG_BIN / "postgres"), "-D", str(data),
        "-c", f"port={p}",
        "-c", "listen_addresses=127.0.0.1",
        # TCP only: a socket path under a deep CI clone can exceed the 107-byte limit.
        "-c", "unix_socket_directories=",
        "-c", "wal_level=replica",
        "-c", "max_wal_senders=10",
        "-c", "max_replication_slots=10",
        "-c", "hot_standby=on",
        "-c", "hot_standby_feedback=on",
        "-c", "wal_keep_size=256MB",
        "-c", "shared_buffers=64MB",
        "-c", "max_connections=300",  # five services' pools, FerretDB's 100, tests
        "-c", "fsync=on",  # reliability tests kill -9 the primary: keep it honest
        "-c", "log_min_messages=warning",
    ]  # fmt: skip


# ------------------------------------------------------------------ primary


def _init_primary() -> None:
    _ensure_user()
    data = _dir("primary")
    if (data / "PG_VERSION").exists():
        return
    _own(data.parent)
    if data.exists():
        shutil.rmtree(data)  # a half-initialised dir from an interrupted first run
    _own(data)
    _as_postgres(
        [
            str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
        ],
        "postgres-initdb",
    )  # fmt: skip
    # The superuser is trusted on loopback (local dev); the app role needs its password.
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "host all postgres 127.0.0.1/32 trust\n"
        "host replication postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )


def _bootstrap_primary() -> None:
    """Role, databases and the replica's slot; idempotent."""
    exists = psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}'")
    if not exists:
        psql(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}'")
    for db in DATABASES:
        if not psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'"):
            psql(f'CREATE DATABASE "{db}" OWNER {APP_ROLE}')
    if not psql(f"SELECT 1 FROM pg_replication_slots WHERE slot_name = '{SLOT}'"):
        psql(f"SELECT pg_create_physical_replication_slot('{SLOT}', true)")


# ------------------------------------------------------------------ replica


def _init_replica() -> None:
    data = _dir("replica")
    if (data / "PG_VERSION").exists():
        return
    if data.exists():
        shutil.rmtree(data)
    _own(data)
    # -R writes standby.signal + primary_conninfo, -S makes it stream through our slot.
    _as_postgres(
        [
            str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary_port()),
            "-U", "postgres", "-D", str(data), "-R", "-S", SLOT, "-X", "stream",
            "-c", "fast",
        ],
        "postgres-basebackup",
    )  # fmt: skip


def _replica_streaming() -> bool:
    """Healthy = accepts connections, is in recovery, and the primary sees it streaming."""
    out = subprocess.run(
        [
            str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(replica_port()), "-U", "postgres",
            "-qAtc", "SELECT pg_is_in_recovery(), status FROM pg_stat_wal_receiver",
        ],
        capture_output=True, text=True, timeout=5, check=False,
    )  # fmt: skip
    return out.returncode == 0 and out.stdout.strip() == "t|streaming"


def components() -> list[Component]:
    from stack.model import Custom

    apt = Apt(("postgresql",), PG_BIN / "postgres")
    primary = Component(
        name="postgres-primary",
        command=lambda: _server_argv(_dir("primary"), primary_port()),
        health=Command(
            (str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(primary_port()))
        ),
        requires=[apt],
        prepare=_init_primary,
        post_start=_bootstrap_primary,
        user=PG_USER,
        stop_signal="SIGINT",  # fast shutdown; SIGTERM would wait for every client to leave
        signal_group=False,
        stop_timeout=30,
        info=lambda: dsn("<db>"),
    )
    replica = Component(
        name="postgres-replica",
        command=lambda: _server_argv(_dir("replica"), replica_port()),
        health=Custom(_replica_streaming, f"streaming replica on :{replica_port()}"),
        depends_on=["postgres-primary"],
        requires=[apt],
        prepare=_init_replica,
        user=PG_USER,
        stop_signal="SIGINT",
        signal_group=False,
        stop_timeout=30,
        info=lambda: dsn("<db>", replica=True),
    )
    return [primary, replica]
