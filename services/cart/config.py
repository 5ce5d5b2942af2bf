"""Cart service configuration: one frozen dataclass, CART_* variables.

| variable | default |
|---|---|
| CART_GRPC_PORT / CART_METRICS_PORT | cart's ports in schemas/topology.yaml |
| CART_DB_* | the cart database on the local primary + replica |
| CART_KAFKA_BOOTSTRAP, CART_REGISTRY_URL | the local stack's Kafka and registry |
| CART_ORDERS_TOPIC, CART_GROUP_ID | shop.orders.v1, cart |

All variables, with their descriptions: docs/config.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from services.runtime.config import ConfigError, load, setting
from services.runtime.db import DatabaseConfig
from services.runtime.kafka import KafkaConfig
from services.runtime.server import ServerConfig
from shop.topology import ORDERS_TOPIC, SERVICES, dlq_topic

PREFIX = "CART"


@dataclass(frozen=True)
class CartConfig:
    """Service-specific settings; server, database and Kafka settings are the runtime's
    shared dataclasses, filled from the same prefix."""

    orders_topic: str = setting(ORDERS_TOPIC, help="OrderPlaced events empty what was ordered")
    group_id: str = setting("cart", help="consumer group of the orders topic")
    max_batch: int = setting(200, help="records per poll")
    retry_max_s: float = setting(
        5.0, help="a record that failed (database down) is retried in place, backing off to this"
    )
    events_kept_days: int = setting(
        14,
        help="applied OrderPlaced ids are kept this long (more than the topic's 7 days of "
        "retention), then pruned hourly",
    )
    migrate_on_start: bool = setting(True, help="run Alembic migrations before serving")
    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    db: DatabaseConfig = dataclasses.field(default_factory=DatabaseConfig)
    kafka: KafkaConfig = dataclasses.field(default_factory=KafkaConfig)

    @property
    def dlq_topic(self) -> str:
        return dlq_topic(self.orders_topic)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CartConfig:
        cfg = load(cls, PREFIX, environ)
        if cfg.max_batch < 1 or cfg.retry_max_s <= 0 or cfg.events_kept_days < 1:
            raise ConfigError(
                f"{PREFIX}_MAX_BATCH >= 1, {PREFIX}_RETRY_MAX_S > 0, {PREFIX}_EVENTS_KEPT_DAYS >= 1"
            )
        try:
            kafka = KafkaConfig.from_env(PREFIX, environ)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return dataclasses.replace(
            cfg,
            server=ServerConfig.from_env(
                PREFIX,
                environ,
                name="cart",
                grpc_port=SERVICES["cart"].port,
                metrics_port=SERVICES["cart"].metrics_port,
            ),
            db=DatabaseConfig.from_env(f"{PREFIX}_DB", environ, name="cart"),
            kafka=dataclasses.replace(kafka, client_id=kafka.client_id or "cart"),
        )
