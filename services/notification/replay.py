"""Dead-letter replay: move DLQ records back to their source topic for another try.

Reads each `<topic>.dlq` from the beginning without a consumer group (nothing committed,
nothing left behind), up to the end offsets seen at the start (so records dead-lettered
again during the replay are not replayed twice in one run), filtered by dead-letter time
and/or event id. A replayed record keeps its key, value and own headers; the dead-letter
and retry headers are dropped so its retries start over. Replaying an event that was sent
meanwhile is harmless: the notification log skips it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.notification.routing import (
    H_DLQ_SOURCE_TOPIC,
    H_DLQ_TIMESTAMP,
    OUR_HEADERS,
    Topology,
)
from services.runtime.kafka import HEADER_EVENT_ID, EventProducer

log = logging.getLogger(__name__)

H_REPLAYED_AT = "x-replayed-at-ms"


@dataclass(frozen=True)
class ReplayFilter:
    topics: tuple[str, ...] = ()  # source topics; empty = all of the topology
    since: datetime | None = None
    until: datetime | None = None
    event_ids: frozenset[str] = field(default_factory=frozenset)
    max_records: int = 1000

    def matches(self, headers: dict[str, bytes], timestamp_ms: int) -> bool:
        raw_at = headers.get(H_DLQ_TIMESTAMP)
        at_ms = int(raw_at) if raw_at and raw_at.isdigit() else timestamp_ms
        if self.since is not None and at_ms < self.since.timestamp() * 1000:
            return False
        if self.until is not None and at_ms >= self.until.timestamp() * 1000:
            return False
        if self.event_ids:
            event_id = headers.get(HEADER_EVENT_ID, b"").decode(errors="replace")
            return event_id in self.event_ids
        return True


def _target(headers: dict[str, bytes], dlq: str, sources: list[str]) -> str:
    """The source topic, from the headers if it is one of ours (a header must not route a
    record to an arbitrary topic), else from the DLQ's own name."""
    named = headers.get(H_DLQ_SOURCE_TOPIC, b"").decode(errors="replace")
    return named if named in sources else dlq.removesuffix(".dlq")


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    scanned: int


async def replay_dead_letters(
    bootstrap_servers: str,
    producer: EventProducer,
    topology: Topology,
    flt: ReplayFilter,
    poll_timeout_s: float = 2.0,
) -> ReplayResult:
    sources = [t for t in topology.topics if not flt.topics or t in flt.topics]
    dlqs = [topology.dlq_topic(t) for t in sources]
    if not dlqs:
        return ReplayResult(0, 0)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(dlqs)
    finally:
        await admin.close()
    tps = [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if t["error_code"] == 0
        for p in t["partitions"]
    ]
    if not tps:
        return ReplayResult(0, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        client_id="notification-replay",
    )
    await consumer.start()
    replayed = scanned = 0
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        for tp in tps:
            if ends[tp] > 0 and await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
        deadline = time.monotonic() + max(30.0, poll_timeout_s)
        while remaining and replayed < flt.max_records and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=int(poll_timeout_s * 1000))
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset >= ends[tp] or replayed >= flt.max_records:
                        remaining.discard(tp)
                        break
                    scanned += 1
                    headers = dict(rec.headers or ())
                    if not flt.matches(headers, rec.timestamp):
                        continue
                    target = _target(headers, tp.topic, sources)
                    kept = [(k, v) for k, v in (rec.headers or ()) if not k.startswith(OUR_HEADERS)]
                    kept.append((H_REPLAYED_AT, str(int(time.time() * 1000)).encode()))
                    ack = await producer.send_raw(target, rec.value, key=rec.key, headers=kept)
                    await ack
                    replayed += 1
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
            if not batch:
                break  # nothing more within the poll timeout: the snapshot end is reached
    finally:
        await consumer.stop()
    log.info(
        "dead letters replayed",
        extra={"fields": {"replayed": replayed, "scanned": scanned, "topics": dlqs}},
    )
    return ReplayResult(replayed, scanned)
