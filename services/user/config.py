"""User service configuration (one frozen dataclass, from the environment).

| variable | default |
|---|---|
| USER_GRPC_PORT / USER_METRICS_PORT | user's ports in schemas/topology.yaml |
| USER_HOST, USER_LOG_LEVEL, USER_DRAIN_TIMEOUT_S | 127.0.0.1, INFO, 10 |
| USER_DB_NAME, USER_DB_PRIMARY_PORT, USER_DB_REPLICA_PORT | user, 5432, 5433 |
| USER_DB_USER / USER_DB_PASSWORD | shopmesh / shopmesh (secret: dev only) |
| USER_KAFKA_BOOTSTRAP, USER_REGISTRY_URL | the local stack's Kafka and registry |
| USER_MIGRATE_ON_START, USER_OUTBOX_RELAY | true, true |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.runtime.config import ConfigError, load, setting
from services.runtime.db import DatabaseConfig
from services.runtime.kafka import KafkaConfig
from services.runtime.server import ServerConfig
from shop.topology import SERVICES


@dataclass(frozen=True)
class Options:
    migrate_on_start: bool = setting(True, help="run Alembic migrations before serving")
    outbox_relay: bool = setting(True, help="publish the outbox to Kafka from this process")


@dataclass(frozen=True)
class UserConfig:
    server: ServerConfig
    db: DatabaseConfig
    kafka: KafkaConfig
    options: Options

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> UserConfig:
        env = os.environ if environ is None else environ
        try:
            kafka = KafkaConfig.from_env("USER", env)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            server=ServerConfig.from_env(
                "USER",
                env,
                name="user",
                grpc_port=SERVICES["user"].port,
                metrics_port=SERVICES["user"].metrics_port,
            ),
            db=DatabaseConfig.from_env("USER_DB", env, name="user"),
            kafka=kafka,
            options=load(Options, "USER", env),
        )
