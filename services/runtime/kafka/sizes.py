"""Topic sizes as a gauge (records retained per topic): the DLQ size on dashboards."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.runtime.kafka.config import KafkaConfig
from services.runtime.metrics import Metrics


async def watch_topic_sizes(
    config: KafkaConfig,
    topics: Sequence[str],
    metrics: Metrics,
    interval_s: float = 10.0,
) -> None:
    """Task: every `interval_s`, set `kafka_topic_messages{topic}` to the records retained in
    each topic (end - beginning offsets over its partitions): the DLQ size on dashboards.
    Never ends on a Kafka outage (a serve() task that ends stops the process)."""
    log = logging.getLogger(__name__)
    consumer: AIOKafkaConsumer | None = None
    try:
        while True:
            try:
                if consumer is None:
                    consumer = AIOKafkaConsumer(
                        bootstrap_servers=config.bootstrap_servers,
                        client_id=f"{config.client_id}-sizes",
                        enable_auto_commit=False,
                    )
                    await consumer.start()
                await consumer._client.force_metadata_update()  # topics created meanwhile
                for topic in topics:
                    parts = [
                        TopicPartition(topic, p)
                        for p in sorted(consumer.partitions_for_topic(topic) or ())
                    ]
                    size = 0
                    if parts:
                        begin = await consumer.beginning_offsets(parts)
                        end = await consumer.end_offsets(parts)
                        size = sum(max(0, end[tp] - begin[tp]) for tp in parts)
                    metrics.kafka_topic_messages.labels(topic).set(size)
            except Exception as exc:  # broker away: keep the last figures, try again
                log.warning("topic size probe failed", extra={"fields": {"error": repr(exc)}})
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await consumer.stop()
                    consumer = None
            await asyncio.sleep(interval_s)
    finally:
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
