"""Product service configuration: one frozen dataclass, built once from the environment.

| variable | default |
|---|---|
| PRODUCT_GRPC_PORT / PRODUCT_METRICS_PORT | product's ports in schemas/topology.yaml |
| PRODUCT_HOST, PRODUCT_LOG_LEVEL, PRODUCT_DRAIN_TIMEOUT_S | 127.0.0.1, INFO, 10 |
| PRODUCT_DB_NAME, PRODUCT_DB_HOST | product, 127.0.0.1 |
| PRODUCT_DB_PRIMARY_PORT, PRODUCT_DB_REPLICA_PORT (0 = no replica) | 5432, 5433 |
| PRODUCT_DB_USER / PRODUCT_DB_PASSWORD | shopmesh / shopmesh (secret: dev only) |
| PRODUCT_DB_POOL_SIZE, PRODUCT_DB_REPLICA_WAIT_MS | 10, 200 |
| PRODUCT_DB_REPLICA_MAX_LAG_BYTES | 16 MiB |
| PRODUCT_MIGRATE_ON_START | true |
| PRODUCT_CACHE_ENABLED, PRODUCT_CACHE_TTL_S | true, 2.0 (the bound on stale stock) |

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


@dataclass(frozen=True)
class CacheConfig:
    """Env: PRODUCT_CACHE_<FIELD>. The read-through catalog cache (services/product/cache.py)."""

    enabled: bool = setting(
        True, help="cache GetProduct / ListProducts rows in each process (LISTEN on the primary)"
    )
    ttl_s: float = setting(
        2.0,
        help="an entry is re-read at most this long after its read, change notice or not: "
        "the bound on how stale stock shown may be",
    )
    max_products: int = setting(10_000, help="products held per process (oldest dropped)")
    max_pages: int = setting(1_000, help="ListProducts pages held per process (oldest dropped)")
    listen_ping_s: float = setting(
        1.0, help="ping of the change listener's connection; a dead one flushes the cache"
    )


@dataclass(frozen=True)
class ProductConfig:
    server: ServerConfig
    db: DatabaseConfig
    migrate_on_start: bool
    cache: CacheConfig

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProductConfig:
        env = os.environ if environ is None else environ
        return cls(
            server=ServerConfig.from_env(
                "PRODUCT",
                env,
                name="product",
                grpc_port=SERVICES["product"].port,
                metrics_port=SERVICES["product"].metrics_port,
            ),
            db=DatabaseConfig.from_env("PRODUCT_DB", env, name="product"),
            migrate_on_start=load(Options, "PRODUCT", env).migrate_on_start,
            cache=load(CacheConfig, "PRODUCT_CACHE", env),
        )
