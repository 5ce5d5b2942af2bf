"""Currency service configuration: one frozen dataclass, built once from the environment.

| variable | default |
|---|---|
| CURRENCY_GRPC_PORT / CURRENCY_METRICS_PORT | currency's ports in schemas/topology.yaml |
| CURRENCY_DB_NAME, CURRENCY_DB_HOST, CURRENCY_DB_PRIMARY_PORT | currency, 127.0.0.1, 5432 |
| CURRENCY_MIGRATE_ON_START, CURRENCY_CURRENT_TTL_S | true, 1.0 |

All variables, with their descriptions: docs/config.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.runtime.config import load, setting
from services.runtime.db import DatabaseConfig
from services.runtime.server import ServerConfig
from shop.topology import SERVICES


@dataclass(frozen=True)
class Options:
    migrate_on_start: bool = setting(True, help="run Alembic migrations before serving")
    current_ttl_s: float = setting(
        1.0,
        help="which rate version is in effect is asked of the database at most this often "
        "(a published version takes effect up to this late); 0: on every call",
    )


@dataclass(frozen=True)
class CurrencyConfig:
    server: ServerConfig
    db: DatabaseConfig
    migrate_on_start: bool
    current_ttl_s: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CurrencyConfig:
        env = os.environ if environ is None else environ
        me = SERVICES["currency"]
        o = load(Options, "CURRENCY", env)
        return cls(
            server=ServerConfig.from_env(
                "CURRENCY", env, name="currency", grpc_port=me.port, metrics_port=me.metrics_port
            ),
            # The rates are small and read per call; no replica (manifest: replica false).
            db=DatabaseConfig.from_env("CURRENCY_DB", env, name="currency", replica_port=0),
            migrate_on_start=o.migrate_on_start,
            current_ttl_s=max(0.0, o.current_ttl_s),
        )
