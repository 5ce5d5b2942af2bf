"""Recommendation service configuration: one frozen dataclass, built once from the
environment (RECOMMENDATION_*; server, database and Kafka settings are the runtime's shared
dataclasses under the same prefix). All variables: docs/config.md."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from services.runtime.config import ConfigError, load, setting
from services.runtime.db import DatabaseConfig
from services.runtime.kafka import KafkaConfig
from services.runtime.server import ServerConfig
from shop.topology import ORDERS_TOPIC, SERVICES, dlq_topic

PREFIX = "RECOMMENDATION"


@dataclass(frozen=True)
class RecommendationConfig:
    orders_topic: str = setting(ORDERS_TOPIC, help="OrderPlaced events are counted")
    group_id: str = setting("recommendation", help="consumer group of the orders topic")
    product_addr: str = setting(
        SERVICES["product"].local_addr, help="product service host:port (cold start)"
    )
    max_batch: int = setting(200, help="records per poll")
    tx_events: int = setting(
        200, help="OrderPlaced events of a partition counted in one transaction (1: each alone)"
    )
    retry_max_s: float = setting(
        5.0, help="a record that failed (database down) is retried in place, backing off to this"
    )
    migrate_on_start: bool = setting(True, help="run Alembic migrations before serving")
    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    db: DatabaseConfig = dataclasses.field(default_factory=DatabaseConfig)
    kafka: KafkaConfig = dataclasses.field(default_factory=KafkaConfig)

    @property
    def dlq_topic(self) -> str:
        return dlq_topic(self.orders_topic)

    @property
    def product_host_port(self) -> tuple[str, int]:
        host, _, port = self.product_addr.rpartition(":")
        return host, int(port)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RecommendationConfig:
        cfg = load(cls, PREFIX, environ)
        if cfg.max_batch < 1 or cfg.tx_events < 1 or cfg.retry_max_s <= 0:
            raise ConfigError(
                f"{PREFIX}_MAX_BATCH >= 1, {PREFIX}_TX_EVENTS >= 1 and {PREFIX}_RETRY_MAX_S > 0"
            )
        host, _, port = cfg.product_addr.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{PREFIX}_PRODUCT_ADDR={cfg.product_addr!r}: expected host:port")
        try:
            kafka = KafkaConfig.from_env(PREFIX, environ)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        me = SERVICES["recommendation"]
        return dataclasses.replace(
            cfg,
            server=ServerConfig.from_env(
                PREFIX,
                environ,
                name="recommendation",
                grpc_port=me.port,
                metrics_port=me.metrics_port,
            ),
            db=DatabaseConfig.from_env(
                f"{PREFIX}_DB", environ, name="recommendation", replica_port=0
            ),
            kafka=dataclasses.replace(kafka, client_id=kafka.client_id or "recommendation"),
        )
