"""Notification service configuration: one frozen dataclass, NOTIFICATION_* variables."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr

from services.runtime.config import ConfigError, check_port, load, setting
from services.runtime.db import DatabaseConfig
from services.runtime.kafka import KafkaConfig
from services.runtime.server import ServerConfig
from shop.topology import CONSUMES, LOCALHOST, RETRY_DELAYS_S, SERVICES, SMTP_PORT

PREFIX = "NOTIFICATION"


@dataclass(frozen=True)
class NotificationConfig:
    """Service-specific settings. Server (NOTIFICATION_GRPC_PORT, _METRICS_PORT, _LOG_LEVEL),
    database (NOTIFICATION_DB_*) and Kafka (NOTIFICATION_KAFKA_BOOTSTRAP, _REGISTRY_URL)
    settings are the runtime's shared dataclasses, filled from the same prefix."""

    topics: tuple[str, ...] = setting(
        CONSUMES["notification"],
        help="event topics consumed; <topic>.retry.N and <topic>.dlq are derived",
    )
    group_id: str = setting("notification", help="consumer group (retry stages add .retry.N)")
    retry_delays_s: tuple[float, ...] = setting(
        tuple(float(d) for d in RETRY_DELAYS_S),
        help="delay of each retry stage; its length is the number of stages",
    )
    max_batch: int = setting(200, help="records per poll")
    max_in_flight: int = setting(
        32,
        help="emails between SMTP and the log's sent mark at once (all stages); a crash "
        "resends at most these",
    )
    session_timeout_ms: int = setting(10000, help="consumer group session timeout")
    smtp_host: str = setting(LOCALHOST, help="SMTP server")
    smtp_port: int = setting(SMTP_PORT, help="SMTP port")
    smtp_sender: str = setting("Shopmesh <no-reply@shopmesh.local>", help="From header")
    smtp_pool: int = setting(16, help="SMTP connections kept open")
    smtp_timeout_s: float = setting(10.0, help="SMTP command timeout")
    message_domain: str = setting(
        "notification.shopmesh.local", help="right-hand side of the deterministic Message-ID"
    )
    stale_claim_s: float = setting(
        120.0, help="a sending claim older than this is taken over (its worker died)"
    )
    user_addr: str = setting(SERVICES["user"].local_addr, help="user service gRPC address")
    order_addr: str = setting(SERVICES["order"].local_addr, help="order service gRPC address")
    rpc_timeout_s: float = setting(3.0, help="deadline of GetUser / GetOrder")
    mark_linger_s: float = setting(
        0.002, help="an email's 'sent' mark waits this long for others to share its UPDATE"
    )
    lookup_cache_s: float = setting(
        30.0, help="a user or order looked up is reused this long (0: every email asks)"
    )
    max_lookups: int = setting(
        32, help="user and order lookups in flight at once, each (a BatchGetUsers counts one)"
    )
    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    db: DatabaseConfig = dataclasses.field(default_factory=DatabaseConfig)
    kafka: KafkaConfig = dataclasses.field(default_factory=KafkaConfig)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NotificationConfig:
        cfg = load(cls, PREFIX, environ)
        check_port(f"{PREFIX}_SMTP_PORT", cfg.smtp_port)
        sender = parseaddr(cfg.smtp_sender)[1]
        if not sender or not sender.isascii() or "@" not in sender:
            raise ConfigError(f"{PREFIX}_SMTP_SENDER: an ASCII address (Name <user@host>)")
        if not cfg.topics:
            raise ConfigError(f"{PREFIX}_TOPICS: at least one topic")
        if not cfg.retry_delays_s or any(d < 0 for d in cfg.retry_delays_s):
            raise ConfigError(f"{PREFIX}_RETRY_DELAYS_S: one or more non-negative delays")
        if min(cfg.max_batch, cfg.smtp_pool, cfg.max_in_flight, cfg.max_lookups) < 1:
            raise ConfigError(
                f"{PREFIX}_MAX_BATCH, _SMTP_POOL, _MAX_IN_FLIGHT, _MAX_LOOKUPS must be >= 1"
            )
        if cfg.lookup_cache_s < 0 or cfg.mark_linger_s < 0:
            raise ConfigError(f"{PREFIX}_LOOKUP_CACHE_S, _MARK_LINGER_S: 0 or more seconds")
        try:
            kafka = KafkaConfig.from_env(PREFIX, environ)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return dataclasses.replace(
            cfg,
            server=ServerConfig.from_env(
                PREFIX,
                environ,
                name="notification",
                grpc_port=SERVICES["notification"].port,
            ),
            db=DatabaseConfig.from_env(f"{PREFIX}_DB", environ, name="notification"),
            kafka=dataclasses.replace(kafka, client_id=kafka.client_id or "notification"),
        )
