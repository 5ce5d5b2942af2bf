"""Tally service: `python -m services.tally.main`. The whole code of the service that
tests/e2e/test_new_service.py adds to a copy of the tree, beside its manifest entry, its
.proto and its event schema: one RPC and one consumed topic, with nothing else edited.

AddTally publishes TallyAdded on the topic the manifest says the service produces and
answers with the count its consumer had read for that name; the consumer reads the topics
the manifest says it consumes. Port, metrics port and topics come from the generated
shop.topology; the counts live in memory (a demonstration, not a store).
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from datetime import UTC, datetime

from services.runtime.kafka import AvroSerde, EventConsumer, EventProducer, KafkaConfig
from services.runtime.metrics import Metrics
from services.runtime.rpc import unary
from services.runtime.server import ServerConfig, run, serve
from shop.events.v1 import TallyAdded
from shop.tally.v1 import tally_grpc
from shop.tally.v1 import tally_pb2 as pb
from shop.topology import CONSUMES, PRODUCES, SERVICES

NAME = "tally"
EVENT = "shop.events.v1.TallyAdded"


class TallyHandlers(tally_grpc.TallyServiceBase):
    def __init__(self, counted: Counter[str], producer: EventProducer) -> None:
        self.counted, self.producer = counted, producer

    @unary
    async def AddTally(self, request: pb.AddTallyRequest) -> pb.AddTallyResponse:
        before = self.counted[request.name]
        event = TallyAdded(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), name=request.name)
        await self.producer.publish(
            PRODUCES[NAME][0], event, key=request.name, event_id=str(event.event_id)
        )
        return pb.AddTallyResponse(name=request.name, counted=before)


class Producer:
    """The event producer as a serve() resource."""

    def __init__(self, producer: EventProducer) -> None:
        self.producer = producer

    async def open(self) -> None:
        await self.producer.start()

    async def close(self) -> None:
        await self.producer.stop()


async def main() -> int:
    ports = SERVICES[NAME]
    server = ServerConfig.from_env(
        "TALLY", name=NAME, grpc_port=ports.port, metrics_port=ports.metrics_port
    )
    kafka = KafkaConfig.from_env("TALLY")
    serde = AvroSerde(kafka.registry_url)
    metrics = Metrics(NAME)
    producer = EventProducer(kafka, serde, metrics=metrics)
    counted: Counter[str] = Counter()

    async def consume() -> None:
        group = os.environ.get("TALLY_GROUP_ID", NAME)
        async with EventConsumer(kafka, serde, CONSUMES[NAME], group, metrics=metrics) as c:
            async for event in c:
                if event.name == EVENT:
                    counted[event.value["name"]] += 1
                await c.commit(event)

    handlers = TallyHandlers(counted, producer)
    return await serve(server, [handlers], [Producer(producer)], [consume], metrics=metrics)


if __name__ == "__main__":
    run(main)
