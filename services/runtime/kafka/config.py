"""Where Kafka and the registry are (KafkaConfig), and what every record carries besides its
value: the header names and the W3C trace context.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

HEADER_EVENT_ID = "event_id"
HEADER_EVENT_TYPE = "event_type"  # record full name, so routers need not decode the value
HEADER_TRACEPARENT = "traceparent"
HEADER_TRACESTATE = "tracestate"
HEADER_CONTENT_TYPE = "content-type"
CONTENT_TYPE_AVRO = b"application/vnd.confluent.avro"


@dataclass(frozen=True)
class KafkaConfig:
    """Where Kafka and the registry are. Services embed it and fill it from their own
    prefix with `KafkaConfig.from_env("ORDER")` (ORDER_KAFKA_BOOTSTRAP, ORDER_REGISTRY_URL)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    registry_url: str = "http://127.0.0.1:8085"
    client_id: str = "shopmesh"
    # CI registers schemas from schemas/avro; producers only look their ids up, so a schema
    # that was never checked for compatibility cannot reach a topic.
    auto_register: bool = False
    request_timeout_ms: int = 15000
    linger_ms: int = 5

    @classmethod
    def from_env(cls, prefix: str, environ: Mapping[str, str] | None = None) -> KafkaConfig:
        env = os.environ if environ is None else environ
        d = cls()
        try:
            return cls(
                bootstrap_servers=env.get(f"{prefix}_KAFKA_BOOTSTRAP", d.bootstrap_servers),
                registry_url=env.get(f"{prefix}_REGISTRY_URL", d.registry_url),
                client_id=env.get(f"{prefix}_KAFKA_CLIENT_ID", prefix.lower()),
                auto_register=env.get(f"{prefix}_KAFKA_AUTO_REGISTER", "false").lower()
                in ("1", "true", "yes"),
                request_timeout_ms=int(
                    env.get(f"{prefix}_KAFKA_REQUEST_TIMEOUT_MS", d.request_timeout_ms)
                ),
                linger_ms=int(env.get(f"{prefix}_KAFKA_LINGER_MS", d.linger_ms)),
            )
        except ValueError as exc:
            raise ValueError(f"{prefix}_KAFKA_*: {exc}") from None


@dataclass(frozen=True)
class TraceContext:
    """W3C trace context as carried in headers (and stored with outbox events)."""

    traceparent: str
    tracestate: str = ""

    def headers(self) -> list[tuple[str, bytes]]:
        out = [(HEADER_TRACEPARENT, self.traceparent.encode())]
        if self.tracestate:
            out.append((HEADER_TRACESTATE, self.tracestate.encode()))
        return out
