"""Registry configuration, parsed once from the environment (REGISTRY_* variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from shop.topology import LOCALHOST, POSTGRES_PRIMARY_PORT, REGISTRY_PORT

DEFAULT_DATABASE_URL = (
    f"postgresql://shopmesh:shopmesh@{LOCALHOST}:{POSTGRES_PRIMARY_PORT}/registry"
)


@dataclass(frozen=True)
class RegistryConfig:
    database_url: str = DEFAULT_DATABASE_URL
    # PostgreSQL schema (namespace) for the tables; tests use a throwaway one.
    database_schema: str = "public"
    host: str = LOCALHOST
    port: int = REGISTRY_PORT
    # Where CLI subcommands (register, check) find a running registry.
    url: str = f"http://{LOCALHOST}:{REGISTRY_PORT}"
    schemas_dir: str = "schemas/avro"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> RegistryConfig:
        env = dict(os.environ) if env is None else env
        raw_port = env.get("REGISTRY_PORT", str(REGISTRY_PORT))
        try:
            port = int(raw_port)
        except ValueError:
            raise SystemExit(f"REGISTRY_PORT must be an integer, got {raw_port!r}") from None
        if not 0 < port < 65536:
            raise SystemExit(f"REGISTRY_PORT out of range: {port}")
        host = env.get("REGISTRY_HOST", LOCALHOST)
        return cls(
            database_url=env.get("REGISTRY_DATABASE_URL", DEFAULT_DATABASE_URL),
            database_schema=env.get("REGISTRY_DATABASE_SCHEMA", "public"),
            host=host,
            port=port,
            url=env.get("REGISTRY_URL", f"http://{host}:{port}"),
            schemas_dir=env.get("REGISTRY_SCHEMAS_DIR", "schemas/avro"),
        )
