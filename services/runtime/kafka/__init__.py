"""Kafka for every service: aiokafka transport plus Avro serde against our schema registry.

Records are Avro in the Confluent wire format (magic byte + schema id), serialized by
confluent-kafka's AsyncAvroSerializer with TopicRecordNameStrategy subjects
(`<topic>-<record full name>`), so one topic carries several event types. The key is the
aggregate id (UTF-8). Headers carry the event id and the W3C trace context (`traceparent`,
`tracestate`) so consumers dedupe and continue the trace without decoding the value.

Producers are idempotent with acks=all: a broker retry never duplicates a record, and an
acknowledged record survives a leader change. Delivery stays at least once end to end
(an outbox relay may republish after a crash), so consumers dedupe by event id.

    serde = AvroSerde(cfg.registry_url)
    async with EventProducer(cfg, serde) as producer:
        meta = await producer.publish("shop.orders.v1", event, key=order_id,
                                      event_id=str(event.event_id), trace=trace)
    async with EventConsumer(cfg, serde, ["shop.orders.v1"], group_id="notification") as c:
        async for ev in c:        # ConsumedEvent: name, value (dict), event_id, trace, ...
            ...; await c.commit(ev)

Modules: config.py (KafkaConfig, FetchPolicy, headers, trace context), serde.py (AvroSerde),
producer.py (EventProducer), consumer.py (EventConsumer, ConsumedEvent), dlq.py (the
dead-letter headers, forwarding, poison versus registry away), pipeline.py (the ordered
consumer loop of a service with one store), sizes.py (the topic size gauge). Imports aiokafka
and confluent_kafka; the domain layers never import it.
"""

from services.runtime.kafka.config import (
    CONTENT_TYPE_AVRO,
    HEADER_CONTENT_TYPE,
    HEADER_EVENT_ID,
    HEADER_EVENT_TYPE,
    HEADER_TRACEPARENT,
    HEADER_TRACESTATE,
    FetchPolicy,
    KafkaConfig,
    TraceContext,
)
from services.runtime.kafka.consumer import ConsumedEvent, EventConsumer
from services.runtime.kafka.producer import EventProducer
from services.runtime.kafka.serde import AvroSerde
from services.runtime.kafka.sizes import watch_topic_sizes

__all__ = [
    "CONTENT_TYPE_AVRO",
    "HEADER_CONTENT_TYPE",
    "HEADER_EVENT_ID",
    "HEADER_EVENT_TYPE",
    "HEADER_TRACEPARENT",
    "HEADER_TRACESTATE",
    "AvroSerde",
    "ConsumedEvent",
    "EventConsumer",
    "EventProducer",
    "FetchPolicy",
    "KafkaConfig",
    "TraceContext",
    "watch_topic_sizes",
]
