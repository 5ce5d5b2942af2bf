"""Notification service configuration: one frozen dataclass, NOTIFICATION_* variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.runtime.config import ConfigError, check_port, load, setting

PREFIX = "NOTIFICATION"


@dataclass(frozen=True)
class NotificationConfig:
    grpc_host: str = setting("127.0.0.1", help="gRPC listen address")
    grpc_port: int = setting(50054, help="gRPC port")
    metrics_port: int = setting(9154, help="Prometheus /metrics port (0 = off)")
    db_primary_dsn: str = setting(
        "postgresql+asyncpg://shopmesh:shopmesh@127.0.0.1:5432/notification",
        help="notification log, primary",
    )
    db_replica_dsn: str = setting(
        "postgresql+asyncpg://shopmesh:shopmesh@127.0.0.1:5433/notification",
        help="notification log, replica (ListNotifications reads)",
    )
    kafka_bootstrap: str = setting("127.0.0.1:9092", help="Kafka bootstrap servers")
    registry_url: str = setting("http://127.0.0.1:8085", help="schema registry")
    topics: tuple[str, ...] = setting(
        ("shop.orders.v1", "shop.users.v1"),
        help="event topics consumed; <topic>.retry.N and <topic>.dlq are derived",
    )
    group_id: str = setting("notification", help="consumer group (retry stages add .retry.N)")
    retry_delays_s: tuple[float, ...] = setting(
        (5.0, 30.0), help="delay of each retry stage; its length is the number of stages"
    )
    max_batch: int = setting(200, help="records per poll")
    smtp_host: str = setting("127.0.0.1", help="SMTP server")
    smtp_port: int = setting(1025, help="SMTP port")
    smtp_sender: str = setting("Shopmesh <no-reply@shopmesh.local>", help="From header")
    smtp_pool: int = setting(4, help="SMTP connections kept open")
    smtp_timeout_s: float = setting(10.0, help="SMTP command timeout")
    message_domain: str = setting(
        "notification.shopmesh.local", help="right-hand side of the deterministic Message-ID"
    )
    stale_claim_s: float = setting(
        120.0, help="a 'sending' claim older than this is taken over (its worker died)"
    )
    user_addr: str = setting("127.0.0.1:50052", help="user service gRPC address")
    order_addr: str = setting("127.0.0.1:50053", help="order service gRPC address")
    rpc_timeout_s: float = setting(3.0, help="deadline of GetUser / GetOrder")
    log_level: str = setting("INFO")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NotificationConfig:
        cfg = load(cls, PREFIX, environ)
        for name in ("grpc_port", "smtp_port"):
            check_port(f"{PREFIX}_{name.upper()}", getattr(cfg, name))
        if cfg.metrics_port:
            check_port(f"{PREFIX}_METRICS_PORT", cfg.metrics_port)
        if not cfg.topics:
            raise ConfigError(f"{PREFIX}_TOPICS: at least one topic")
        if not cfg.retry_delays_s or any(d < 0 for d in cfg.retry_delays_s):
            raise ConfigError(f"{PREFIX}_RETRY_DELAYS_S: one or more non-negative delays")
        if cfg.max_batch < 1 or cfg.smtp_pool < 1:
            raise ConfigError(f"{PREFIX}_MAX_BATCH and {PREFIX}_SMTP_POOL must be >= 1")
        return cfg
