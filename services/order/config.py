"""Order service configuration: one frozen dataclass, built once from the environment.

| variable | default |
|---|---|
| ORDER_GRPC_PORT / ORDER_METRICS_PORT | order's ports in schemas/topology.yaml |
| ORDER_HOST, ORDER_LOG_LEVEL, ORDER_DRAIN_TIMEOUT_S | 127.0.0.1, INFO, 10 |
| ORDER_MONGO_URL, ORDER_MONGO_DATABASE | the local FerretDB, order |
| ORDER_MONGO_MAX_POOL | 20 (commands in flight; x2 must stay under FerretDB's pool) |
| ORDER_PRODUCT_ADDR, ORDER_USER_ADDR | product's, user's local port (the stack: Envoy, internal) |
| ORDER_CURRENCY_ADDR, ORDER_SHIPPING_ADDR | currency's, shipping's local port (same) |
| ORDER_DEFAULT_SHIPPING | 9.90 (catalog currency; charged without a usable quote) |
| ORDER_RESERVE_ATTEMPTS | 3 (ReserveStock is idempotent: retried on UNAVAILABLE, Envoy down too) |
| ORDER_KAFKA_BOOTSTRAP, ORDER_REGISTRY_URL | the local stack's Kafka and registry |
| ORDER_RELAY_ENABLED, _BATCH, _LEASE_S (ORDER_RELAY_*) | true, 500, 30 |
| ORDER_RELAY_POLL_S, _GRACE_S, _DELETE_AFTER_S (ORDER_RELAY_*) | 1, 2, 0.2 |
| ORDER_SWEEP_INTERVAL_S, ORDER_PENDING_TIMEOUT_S, ORDER_TOMBSTONE_TTL_S | 10, 60, 600 |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from services.runtime.config import ConfigError, load, setting
from services.runtime.kafka import KafkaConfig
from services.runtime.server import ServerConfig
from shop.topology import MONGO_URL, SERVICES


@dataclass(frozen=True)
class Options:
    mongo_url: str = setting(MONGO_URL, help="FerretDB / MongoDB URL")
    mongo_database: str = setting("order", help="database holding orders")
    mongo_max_pool: int = setting(
        20, help="Mongo connections (commands in flight); x2 must stay under FerretDB's pool"
    )
    product_addr: str = setting(SERVICES["product"].local_addr, help="product service host:port")
    user_addr: str = setting(SERVICES["user"].local_addr, help="user service host:port")
    currency_addr: str = setting(SERVICES["currency"].local_addr, help="currency service host:port")
    shipping_addr: str = setting(SERVICES["shipping"].local_addr, help="shipping service host:port")
    default_shipping: str = setting(
        "9.90",
        help="shipping charged, in the catalog's currency (converted like the lines), when "
        "an order names no quote or the shipping service cannot be asked",
    )
    reserve_attempts: int = setting(3, help="ReserveStock tries on UNAVAILABLE")
    relay_enabled: bool = setting(True, help="run an outbox relay in this process")
    relay_batch: int = setting(500, help="claims sent per relay round (then all acks awaited)")
    relay_lease_s: float = setting(30.0, help="claim lease; longer than a publish can take")
    relay_poll_s: float = setting(
        1.0, help="fallback: how often the relay looks for claims it was not handed"
    )
    relay_grace_s: float = setting(
        2.0, help="fallback: another instance's claims are its relay's for this long"
    )
    relay_delete_after_s: float = setting(
        0.2, help="published claims are deleted together, at most this late"
    )
    sweep_interval_s: float = setting(10.0, help="sweeper period (0 = off)")
    pending_timeout_s: float = setting(60.0, help="PENDING older than this is compensated")
    tombstone_ttl_s: float = setting(600.0, help="FAILED placements kept this long")


@dataclass(frozen=True)
class OrderConfig:
    server: ServerConfig
    kafka: KafkaConfig
    mongo_url: str
    mongo_database: str
    mongo_max_pool: int
    product_addr: tuple[str, int]
    user_addr: tuple[str, int]
    currency_addr: tuple[str, int]
    shipping_addr: tuple[str, int]
    default_shipping: Decimal
    reserve_attempts: int
    relay_enabled: bool
    relay_batch: int
    relay_lease_s: float
    relay_poll_s: float
    relay_grace_s: float
    relay_delete_after_s: float
    sweep_interval_s: float
    pending_timeout_s: float
    tombstone_ttl_s: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OrderConfig:
        env = os.environ if environ is None else environ
        o = load(Options, "ORDER", env)
        if o.pending_timeout_s < 15:
            # Must outlive PlaceOrder's 10 s deadline, or live requests get compensated.
            raise ConfigError("ORDER_PENDING_TIMEOUT_S: must be at least 15")
        return cls(
            server=ServerConfig.from_env(
                "ORDER",
                env,
                name="order",
                grpc_port=SERVICES["order"].port,
                metrics_port=SERVICES["order"].metrics_port,
            ),
            kafka=KafkaConfig.from_env("ORDER", env),
            mongo_url=o.mongo_url,
            mongo_database=o.mongo_database,
            mongo_max_pool=max(1, o.mongo_max_pool),
            product_addr=_addr("ORDER_PRODUCT_ADDR", o.product_addr),
            user_addr=_addr("ORDER_USER_ADDR", o.user_addr),
            currency_addr=_addr("ORDER_CURRENCY_ADDR", o.currency_addr),
            shipping_addr=_addr("ORDER_SHIPPING_ADDR", o.shipping_addr),
            default_shipping=_amount("ORDER_DEFAULT_SHIPPING", o.default_shipping),
            reserve_attempts=max(1, o.reserve_attempts),
            relay_enabled=o.relay_enabled,
            relay_batch=o.relay_batch,
            relay_lease_s=o.relay_lease_s,
            relay_poll_s=o.relay_poll_s,
            relay_grace_s=o.relay_grace_s,
            relay_delete_after_s=o.relay_delete_after_s,
            sweep_interval_s=o.sweep_interval_s,
            pending_timeout_s=o.pending_timeout_s,
            tombstone_ttl_s=o.tombstone_ttl_s,
        )


def _addr(var: str, value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{var}={value!r}: expected host:port")
    return host, int(port)


def _amount(var: str, value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ConfigError(f"{var}={value!r}: expected a decimal amount, e.g. 9.90") from None
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("1e-9")):
        raise ConfigError(f"{var}={value!r}: expected >= 0 with at most 9 decimals")
    return amount
