"""The database settings of a service: `DatabaseConfig.from_env("<SERVICE>_DB")`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.runtime.config import check_port, load, secret, setting
from shop.topology import LOCALHOST, POSTGRES_PRIMARY_PORT, POSTGRES_REPLICA_PORT


@dataclass(frozen=True)
class DatabaseConfig:
    """Env: <SERVICE>_DB_<FIELD>, e.g. PRODUCT_DB_NAME, PRODUCT_DB_PASSWORD."""

    name: str = setting("postgres", help="database name")
    host: str = setting(LOCALHOST, help="primary host")
    primary_port: int = setting(POSTGRES_PRIMARY_PORT, help="primary port")
    replica_host: str = setting(LOCALHOST, help="streaming replica host")
    replica_port: int = setting(
        POSTGRES_REPLICA_PORT, help="replica port; 0 = no replica, all reads on primary"
    )
    user: str = setting("shopmesh", help="role")
    password: str = secret("shopmesh", help="role password (dev default only in dev)")
    pool_size: int = setting(10, help="primary pool size")
    max_overflow: int = setting(5, help="extra primary connections under bursts")
    replica_pool_size: int = setting(10, help="replica pool size")
    replica_wait_ms: int = setting(200, help="how long a read waits for the replica to catch up")
    replica_max_lag_bytes: int = setting(16 << 20, help="beyond this lag reads use the primary")
    connect_timeout_s: float = setting(2.0, help="connect timeout")
    statement_timeout_ms: int = setting(5000, help="server-side statement timeout")
    replica_pre_ping: bool = setting(
        False, help="ping replica connections at every checkout (3 round trips)"
    )
    ping_idle_s: float = setting(10.0, help="without pre-ping: ping connections idle this long")
    pool_recycle_s: int = setting(1800, help="replace pooled connections older than this")
    read_snapshot: str = setting(
        "multi", help="multi: single-statement reads in autocommit; always: every read in a txn"
    )
    trace_statements: bool = setting(
        False, help="a span per SQL statement (db.statement); off: one span per unit of work"
    )
    raw_reads: bool = setting(
        True,
        help="UnitOfWork.fetch on raw asyncpg connections (prepared once per connection); "
        "false: through SQLAlchemy Core",
    )

    @classmethod
    def from_env(cls, prefix: str, environ: Any = None, **defaults: Any) -> DatabaseConfig:
        cfg = load(cls, prefix, environ, **defaults)
        check_port(f"{prefix}_PRIMARY_PORT", cfg.primary_port)
        if cfg.replica_port:
            check_port(f"{prefix}_REPLICA_PORT", cfg.replica_port)
        return cfg

    def url(self, replica: bool = False) -> str:
        host, port = (
            (self.replica_host, self.replica_port) if replica else (self.host, self.primary_port)
        )
        return f"postgresql+asyncpg://{self.user}:{self.password}@{host}:{port}/{self.name}"

    def connect_kwargs(self, replica: bool, application_name: str) -> dict[str, Any]:
        """asyncpg.connect() arguments for a raw connection (reads, LISTEN)."""
        return {
            "host": self.replica_host if replica else self.host,
            "port": self.replica_port if replica else self.primary_port,
            "user": self.user,
            "password": self.password,
            "database": self.name,
            "timeout": self.connect_timeout_s,
            "server_settings": {
                "application_name": application_name,
                "statement_timeout": str(self.statement_timeout_ms),
            },
        }
