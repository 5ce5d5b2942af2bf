"""services.runtime.kafka.pipeline (the ordered consumer cart and recommendation run on)
against real Kafka and our schema registry: poison goes to <topic>.dlq with its headers and
the partition moves on; a failing apply and a registry that does not answer are retried in
place, then applied once; offsets are committed only past handled records, so a consumer
restarted in the same group re-applies nothing and skips nothing. The handler records what
it was given (the service side is the cart's and recommendation's own tests)."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry

from services.runtime.kafka import (
    HEADER_EVENT_ID,
    AvroSerde,
    ConsumedEvent,
    EventConsumer,
    EventProducer,
    KafkaConfig,
)
from services.runtime.kafka.pipeline import ConsumerMetrics, OrderedConsumer, PoisonRecordError
from tests.integration.runtime.test_runtime_kafka import _placed  # an OrderPlaced event

pytestmark = pytest.mark.stack

REGISTRY = "http://127.0.0.1:8085"
NOBODY = "http://127.0.0.1:9"  # a registry that refuses connections


@pytest.fixture(scope="module")
def kafka_cfg(stack) -> KafkaConfig:
    stack.require("kafka", "registry")
    return KafkaConfig(bootstrap_servers=stack.kafka_bootstrap, registry_url=REGISTRY)


@pytest.fixture
def topic(kafka_cfg) -> Any:
    """A private one-partition topic and its DLQ; subjects deleted afterwards."""
    admin = AdminClient({"bootstrap.servers": kafka_cfg.bootstrap_servers})
    name = f"test.runtime-pipeline.{uuid.uuid4().hex[:10]}"
    names = [name, f"{name}.dlq"]
    for fut in admin.create_topics([NewTopic(n, 1, 1) for n in names]).values():
        fut.result(timeout=20)
    yield name
    for fut in admin.delete_topics(names).values():
        fut.exception(timeout=20)
    for suffix in ("", "?permanent=true"):
        req = urllib.request.Request(
            f"{REGISTRY}/subjects/{name}-shop.events.v1.OrderPlaced{suffix}", method="DELETE"
        )
        with contextlib.suppress(Exception):  # already gone
            urllib.request.urlopen(req, timeout=5).close()


async def _produce(cfg: KafkaConfig, topic: str, records: list[str | bytes]) -> None:
    """Order ids as OrderPlaced events, bytes as raw (undecodable) values, in this order."""
    async with EventProducer(cfg, AvroSerde(REGISTRY, auto_register=True)) as producer:
        for r in records:
            if isinstance(r, bytes):
                await (await producer.send_raw(topic, r, key=b"k", headers=[("x-mine", b"1")]))
            else:
                event = _placed(r)
                await producer.publish(topic, event, key="k", event_id=str(event.event_id))


class Recorder:
    """Order ids applied, in order. `fail(ids)` decides whether an apply raises; an order id
    starting with "bad" is malformed (poison)."""

    def __init__(self, fail: Callable[[list[str]], bool] = lambda ids: False) -> None:
        self.applied: list[str] = []
        self.batches: list[list[str]] = []
        self.fail = fail

    def decode(self, ev: ConsumedEvent) -> str | None:
        order_id = str(ev.value["order_id"])
        if order_id.startswith("bad"):
            raise PoisonRecordError(f"order {order_id} is malformed")
        return order_id

    async def apply(self, events: list[str]) -> Mapping[str, int]:
        if self.fail(events):
            raise ConnectionError("store away")
        self.applied += events
        self.batches.append(events)
        return {"applied": len(events)}


@contextlib.asynccontextmanager
async def running(
    cfg: KafkaConfig,
    topic: str,
    group: str,
    handler: Recorder,
    *,
    registry: str = REGISTRY,
    batch_events: int = 1,
) -> AsyncIterator[OrderedConsumer[str]]:
    consumer = EventConsumer(cfg, AvroSerde(registry), [topic], group_id=group)
    producer = EventProducer(cfg, AvroSerde(REGISTRY))
    pipeline: OrderedConsumer[str] = OrderedConsumer(
        consumer, producer, handler,
        ConsumerMetrics(CollectorRegistry(), "test_pipeline_event", topic, "applied"),
        dlq_topic=f"{topic}.dlq", group_id=group, batch_events=batch_events, retry_max_s=0.2,
    )  # fmt: skip
    await producer.start()
    await consumer.start()
    task = asyncio.create_task(pipeline.run())
    try:
        yield pipeline
    finally:
        pipeline.stop()
        await asyncio.wait_for(task, 10)
        await consumer.stop()
        await producer.stop()


async def until(done: Callable[[], bool], what: str, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.05)):
        if done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def committed(cfg: KafkaConfig, topic: str, group: str) -> int | None:
    probe = AIOKafkaConsumer(bootstrap_servers=cfg.bootstrap_servers, group_id=group)
    await probe.start()
    try:
        return await probe.committed(TopicPartition(topic, 0))
    finally:
        await probe.stop()


async def dead_letters(cfg: KafkaConfig, topic: str, count: int, seconds: float = 10) -> list[Any]:
    """The DLQ's records, read until `count` came or `seconds` passed."""
    reader = AIOKafkaConsumer(
        f"{topic}.dlq", bootstrap_servers=cfg.bootstrap_servers, group_id=None,
        auto_offset_reset="earliest",
    )  # fmt: skip
    await reader.start()
    got: list[Any] = []
    try:
        for _ in range(int(seconds / 0.25)):
            for msgs in (await reader.getmany(timeout_ms=250)).values():
                got += msgs
            if len(got) >= count:
                break
    finally:
        await reader.stop()
    return got


async def test_poison_goes_to_the_dlq_with_its_headers_and_the_partition_moves_on(kafka_cfg, topic):
    await _produce(kafka_cfg, topic, ["o-1", b"\x00not avro", "bad-2", "o-3"])
    group = f"tp-{uuid.uuid4().hex[:8]}"
    handler = Recorder()
    async with running(kafka_cfg, topic, group, handler) as pipeline:
        await until(lambda: handler.applied == ["o-1", "o-3"], "o-1 and o-3 applied")
        await until(
            lambda: pipeline.metrics.events.labels("dead_lettered")._value.get() == 2,
            "two dead letters",
        )
    assert await committed(kafka_cfg, topic, group) == 4
    dead = await dead_letters(kafka_cfg, topic, 2)
    assert dead[0].value == b"\x00not avro"  # the bytes as consumed
    by_offset = {dict(d.headers)["x-dlq-source-offset"]: dict(d.headers) for d in dead}
    assert sorted(by_offset) == [b"1", b"2"]
    undecodable, malformed = by_offset[b"1"], by_offset[b"2"]
    for h in (undecodable, malformed):
        assert h["x-dlq-reason"] == b"poison"
        assert h["x-dlq-group"] == group.encode()
        assert h["x-dlq-source-topic"] == topic.encode()
        assert h["x-dlq-source-partition"] == b"0"
        assert int(h["x-dlq-timestamp-ms"]) > 0
    assert undecodable["x-mine"] == b"1"  # the record's own headers travel with it
    # Magic byte 0 and a schema id the registry does not know (404): poison, not "away".
    assert undecodable["x-dlq-error"].startswith(b"schema not in registry")
    assert malformed["x-dlq-error"] == b"order bad-2 is malformed"
    assert HEADER_EVENT_ID in malformed  # the event id for a replay


async def test_a_failing_apply_is_retried_in_place_then_applied_once(kafka_cfg, topic):
    await _produce(kafka_cfg, topic, ["o-1", "o-2", "o-3"])
    failures = [2]

    def fail(ids: list[str]) -> bool:
        if "o-2" in ids and failures[0]:
            failures[0] -= 1
            return True
        return False

    group = f"tp-{uuid.uuid4().hex[:8]}"
    handler = Recorder(fail)
    async with running(kafka_cfg, topic, group, handler) as pipeline:
        await until(lambda: handler.applied == ["o-1", "o-2", "o-3"], "all applied")
        assert pipeline.metrics.failures._value.get() == 2
    assert await committed(kafka_cfg, topic, group) == 3
    assert await dead_letters(kafka_cfg, topic, 1, seconds=3) == [], (
        "a transient failure is no poison"
    )


async def test_a_registry_that_does_not_answer_is_retried_not_dead_lettered(kafka_cfg, topic):
    await _produce(kafka_cfg, topic, ["o-1", "o-2"])
    group = f"tp-{uuid.uuid4().hex[:8]}"
    handler = Recorder()
    async with running(kafka_cfg, topic, group, handler, registry=NOBODY) as pipeline:
        await until(lambda: pipeline.metrics.failures._value.get() >= 2, "two failed polls")
        assert handler.applied == []
        assert await committed(kafka_cfg, topic, group) is None
        pipeline.consumer.serde = AvroSerde(REGISTRY)  # the registry is back
        await until(lambda: handler.applied == ["o-1", "o-2"], "both applied")
    assert await dead_letters(kafka_cfg, topic, 1, seconds=3) == []


@pytest.mark.parametrize("batch_events", [1, 3])
async def test_a_restarted_consumer_re_applies_nothing_and_skips_nothing(
    kafka_cfg, topic, batch_events
):
    ids = [f"o-{i}" for i in range(10)]
    await _produce(kafka_cfg, topic, [*ids[:5], b"\x00poison", *ids[5:]])
    group = f"tp-{uuid.uuid4().hex[:8]}"
    # The first consumer's store fails for good at o-6: it stops with the records from
    # there on handled by nobody.
    first = Recorder(lambda batch: "o-6" in batch)
    async with running(kafka_cfg, topic, group, first, batch_events=batch_events) as pipeline:
        await until(lambda: pipeline.metrics.failures._value.get() >= 2, "o-6 failing")
    upto = await committed(kafka_cfg, topic, group)
    handled = len(first.applied) + 1  # the poison record (offset 5) was dead-lettered
    assert first.applied == ids[: len(first.applied)]
    assert upto == handled, "committed exactly past the records handled"
    assert "o-6" not in first.applied

    second = Recorder()
    async with running(kafka_cfg, topic, group, second, batch_events=batch_events):
        await until(lambda: "o-9" in second.applied, "the rest applied")
    assert first.applied + second.applied == ids, "nothing re-applied, nothing skipped"
    assert await committed(kafka_cfg, topic, group) == 11
    assert len(await dead_letters(kafka_cfg, topic, 1)) == 1
    if batch_events > 1:
        assert max(len(b) for b in second.batches) > 1, "consecutive events applied together"
