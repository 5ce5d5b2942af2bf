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
    # A consumer's fetch waits on the broker until it has fetch_min_bytes or fetch_max_wait_ms
    # passed. None: the consumer's own choice (FetchPolicy), since that trades latency for
    # per-record cost differently per consumer (see FetchPolicy).
    fetch_max_wait_ms: int | None = None
    fetch_min_bytes: int | None = None

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
                fetch_max_wait_ms=_optional_int(env.get(f"{prefix}_KAFKA_FETCH_MAX_WAIT_MS")),
                fetch_min_bytes=_optional_int(env.get(f"{prefix}_KAFKA_FETCH_MIN_BYTES")),
            )
        except ValueError as exc:
            raise ValueError(f"{prefix}_KAFKA_*: {exc}") from None


def _optional_int(text: str | None) -> int | None:
    """An integer setting that may be left unset (empty or absent: None)."""
    if text is None or not text.strip():
        return None
    value = int(text)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


@dataclass(frozen=True)
class FetchPolicy:
    """How long a consumer's fetch may wait on the broker to carry several records.

    With aiokafka's defaults (min 1 byte, 500 ms) every fetch returns as soon as one record
    is there: at the rates this shop runs (5-50 orders/s) each record then costs its own
    fetch, its own pass of the consumer loop and its own offset commit, in the consumer and
    in the broker. Asking for `min_bytes` (more than a few records) lets a fetch gather
    what arrives within `max_wait_ms` instead: the records wait at most that long more,
    a backlog still comes at once (min_bytes is there immediately), and an idle consumer
    sends one fetch per `max_wait_ms`."""

    max_wait_ms: int
    min_bytes: int

    def options(self, config: KafkaConfig) -> dict[str, int]:
        """aiokafka consumer options; the service's <PREFIX>_KAFKA_FETCH_* win when set."""
        wait = self.max_wait_ms if config.fetch_max_wait_ms is None else config.fetch_max_wait_ms
        least = self.min_bytes if config.fetch_min_bytes is None else config.fetch_min_bytes
        return {"fetch_max_wait_ms": wait, "fetch_min_bytes": max(1, least)}


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
