"""Shipping service configuration: one frozen dataclass, built once from the environment.

| variable | default |
|---|---|
| SHIPPING_GRPC_PORT / SHIPPING_METRICS_PORT | shipping's ports in schemas/topology.yaml |
| SHIPPING_DB_NAME, SHIPPING_DB_HOST, SHIPPING_DB_PRIMARY_PORT | shipping, 127.0.0.1, 5432 |
| SHIPPING_CURRENCY_ADDR | currency's local port (the stack: Envoy, internal) |
| SHIPPING_RULES_FILE, SHIPPING_QUOTE_TTL_S | services/shipping/rules.yaml, 900 |
| SHIPPING_QUOTE_RETENTION_S, SHIPPING_PRUNE_INTERVAL_S | 86400, 300 (0 = no pruning) |

All variables, with their descriptions: docs/config.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from services.runtime.config import ConfigError, load, setting
from services.runtime.db import DatabaseConfig
from services.runtime.server import ServerConfig
from services.shipping.domain import Rules
from shop.topology import SERVICES

RULES = Path(__file__).parent / "rules.yaml"


@dataclass(frozen=True)
class Options:
    migrate_on_start: bool = setting(True, help="run Alembic migrations before serving")
    currency_addr: str = setting(SERVICES["currency"].local_addr, help="currency service host:port")
    rules_file: str = setting(
        "",
        help="the price rules (zones, fees), YAML; empty: the bundled services/shipping/rules.yaml",
    )
    quote_ttl_s: float = setting(900.0, help="how long an order may name a quote")
    quote_retention_s: float = setting(
        86400.0, help="how long an expired quote is kept (GetQuote answers it as expired)"
    )
    prune_interval_s: float = setting(
        300.0, help="period of the task deleting quotes past their retention (0 = off)"
    )


@dataclass(frozen=True)
class ShippingConfig:
    server: ServerConfig
    db: DatabaseConfig
    migrate_on_start: bool
    currency_addr: tuple[str, int]
    rules: Rules
    quote_ttl_s: float
    quote_retention_s: float
    prune_interval_s: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ShippingConfig:
        env = os.environ if environ is None else environ
        me = SERVICES["shipping"]
        o = load(Options, "SHIPPING", env)
        host, _, port = o.currency_addr.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"SHIPPING_CURRENCY_ADDR={o.currency_addr!r}: expected host:port")
        try:
            path = Path(o.rules_file) if o.rules_file else RULES
            rules = Rules.parse(yaml.safe_load(path.read_text()), str(path))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ConfigError(f"SHIPPING_RULES_FILE: {exc}") from None
        if o.quote_ttl_s <= 0:
            raise ConfigError("SHIPPING_QUOTE_TTL_S: must be positive")
        if o.quote_retention_s < 0:
            raise ConfigError("SHIPPING_QUOTE_RETENTION_S: must not be negative")
        if o.prune_interval_s < 0:
            raise ConfigError("SHIPPING_PRUNE_INTERVAL_S: must not be negative")
        return cls(
            server=ServerConfig.from_env(
                "SHIPPING", env, name="shipping", grpc_port=me.port, metrics_port=me.metrics_port
            ),
            db=DatabaseConfig.from_env("SHIPPING_DB", env, name="shipping", replica_port=0),
            migrate_on_start=o.migrate_on_start,
            currency_addr=(host, int(port)),
            rules=rules,
            quote_ttl_s=o.quote_ttl_s,
            quote_retention_s=o.quote_retention_s,
            prune_interval_s=o.prune_interval_s,
        )
