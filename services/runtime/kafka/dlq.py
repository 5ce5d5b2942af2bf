"""Dead letters for every consumer: the x-dlq-* header names, the headers a dead-lettered
copy carries, forwarding a record's bytes to another topic, and whether a record that did
not decode is poison (dead-letter it) or met the schema registry away (retry it).

The header names live here only, so `notification replay`, the runbooks and every service's
DLQ agree on them. A copy keeps the record's own headers (event id, trace context) and
its raw bytes, so a replay republishes exactly what was consumed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError

from services.runtime.kafka.consumer import ConsumedEvent
from services.runtime.kafka.producer import EventProducer

# The registry client's own HTTP library: confluent-kafka imports httpx2 under the name
# httpx when it is installed (schema_registry/common/_httpx_compat.py), so "registry
# unreachable" arrives as httpx2.ConnectError, which is no httpx.HTTPError.
try:
    from confluent_kafka.schema_registry.common._httpx_compat import httpx as _registry_http

    _HTTP_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, _registry_http.HTTPError)
except ImportError:  # an older client that used httpx itself
    _HTTP_ERRORS = (httpx.HTTPError,)

DLQ_PREFIX = "x-dlq-"
H_DLQ_REASON = "x-dlq-reason"  # a stable label: poison, retries-exhausted, unknown-schema...
H_DLQ_ERROR = "x-dlq-error"  # one line, no stack trace
H_DLQ_ATTEMPTS = "x-dlq-attempts"
H_DLQ_GROUP = "x-dlq-group"  # the consumer group that gave up on it
H_DLQ_SOURCE_TOPIC = "x-dlq-source-topic"
H_DLQ_SOURCE_PARTITION = "x-dlq-source-partition"
H_DLQ_SOURCE_OFFSET = "x-dlq-source-offset"
H_DLQ_TIMESTAMP = "x-dlq-timestamp-ms"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of an event topic (the manifest creates one per topic)."""
    return f"{topic}.dlq"


def one_line(message: str) -> str:
    """A header-sized error text: whitespace collapsed, at most 300 characters."""
    return " ".join(message.split())[:300]


@dataclass(frozen=True)
class DecodeFailure:
    """Why a record did not decode. `kind`: "registry-away" (transient: the same bytes will
    decode once the registry answers), "unknown-schema" (the registry refused the schema id)
    or "undecodable" (not our wire format, or a value Avro cannot read)."""

    kind: str
    message: str

    @property
    def transient(self) -> bool:
        return self.kind == "registry-away"


def classify_decode_error(exc: BaseException) -> DecodeFailure:
    """Poison versus the registry away, for the `error` of a ConsumedEvent."""
    if isinstance(exc, SchemaRegistryError):
        status = exc.http_status_code
        if status == 404:
            return DecodeFailure("unknown-schema", f"schema not in registry: {exc.error_message}")
        if status >= 500 or status <= 0:
            return DecodeFailure("registry-away", f"registry: HTTP {status}")
        return DecodeFailure("unknown-schema", f"registry refused: HTTP {status}")
    if isinstance(exc, (*_HTTP_ERRORS, OSError, TimeoutError)) or type(exc).__module__.startswith(
        ("httpx", "httpcore")
    ):
        return DecodeFailure("registry-away", f"registry unreachable: {type(exc).__name__}")
    return DecodeFailure("undecodable", f"undecodable value: {type(exc).__name__}: {exc}")


def carried_headers(
    ev: ConsumedEvent, drop: tuple[str, ...] = (DLQ_PREFIX,)
) -> list[tuple[str, bytes]]:
    """The record's own headers (event id, trace context...) without bookkeeping of an
    earlier hop (names starting with one of `drop`)."""
    return [(k, v) for k, v in ev.headers.items() if not k.startswith(drop)]


def dead_letter_headers(
    carried: Iterable[tuple[str, bytes]],
    *,
    reason: str,
    error: str,
    source: tuple[str, int | str, int | str],
    group: str | None = None,
    attempts: int | None = None,
) -> list[tuple[str, bytes]]:
    """The headers of a dead-lettered copy: what it carried, then why and from where
    (`source` = topic, partition, offset of the record first consumed)."""
    topic, partition, offset = source
    headers = [*carried, (H_DLQ_REASON, reason.encode()), (H_DLQ_ERROR, one_line(error).encode())]
    if attempts is not None:
        headers.append((H_DLQ_ATTEMPTS, str(attempts).encode()))
    if group is not None:
        headers.append((H_DLQ_GROUP, group.encode()))
    headers += [
        (H_DLQ_SOURCE_TOPIC, topic.encode()),
        (H_DLQ_SOURCE_PARTITION, str(partition).encode()),
        (H_DLQ_SOURCE_OFFSET, str(offset).encode()),
        (H_DLQ_TIMESTAMP, str(int(time.time() * 1000)).encode()),
    ]
    return headers


async def forward(
    producer: EventProducer, topic: str, ev: ConsumedEvent, headers: Sequence[tuple[str, bytes]]
) -> None:
    """The record's bytes and key to `topic`, returning once Kafka acknowledged the copy:
    the caller commits the source offset only after that."""
    key = ev.key.encode() if ev.key is not None else None
    ack = await producer.send_raw(topic, ev.raw, key=key, headers=headers)
    await ack


def header_text(headers: Mapping[str, bytes], name: str, default: str = "") -> str:
    """A header as text; a missing header is `default`, bad bytes never raise."""
    raw = headers.get(name)
    return raw.decode(errors="replace") if raw is not None else default
