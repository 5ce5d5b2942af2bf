"""Adding a service is one manifest entry plus its code. In a copy of the tree
(tests/e2e/tree_copy.py) the test adds a service `tally` with one RPC and one consumed
topic: its entry in schemas/topology.yaml (and its topic's), its .proto, its event schema
and one module of code (tests/e2e/new_service/), and nothing else. The copy's own `make gen`
steps generate its stubs, event type, topic constants and mesh config; the service runs as
a real process from the copy, behind a private Envoy and NGINX rendered by the copy's
generator, and the test reaches its RPC through that gateway (REST and gRPC-Web) and its
events through the shared Kafka (a topic of this run's own name, deleted at the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from mesh.stubs import message_class, service_of
from mesh.testing import GRPC_WEB_HEADERS, PrivateEnvoy, grpc_web_parse, grpc_web_request
from tests.e2e.tree_copy import TreeCopy, wait_serving

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

HERE = Path(__file__).parent / "new_service"
RECORD = "shop.events.v1.TallyAdded"
SERVICE = "shop.tally.v1.TallyService"


def manifest_entry(port: int, topic: str) -> str:
    return (
        "  tally:                                # one RPC, one consumed topic\n"
        f"    port: {port}\n"
        f"    produces: [{topic}]\n"
        f"    consumes: [{topic}]\n\n"
    )


@pytest.fixture
def kafka(stack):
    stack.require("kafka", "registry")
    return stack


async def test_a_new_service_is_its_manifest_entry_plus_its_code(kafka, tmp_path) -> None:
    run = uuid.uuid4().hex[:10]
    topic = f"test.{run}.tallies.v1"
    tree = TreeCopy(tmp_path).create()

    # The whole change: a manifest entry, a topic, the schemas, the code.
    port = tree.free_service_port()
    tree.insert_after("schemas/topology.yaml", "services:", manifest_entry(port, topic))
    tree.add_topic(topic, [RECORD])
    tree.write("schemas/proto/shop/tally/v1/tally.proto", (HERE / "tally.proto").read_text())
    tree.write(
        "schemas/avro/shop/events/v1/TallyAdded.avsc", (HERE / "TallyAdded.avsc").read_text()
    )
    tree.write("services/tally/__init__.py", "")
    tree.write("services/tally/main.py", (HERE / "tally_main.py").read_text())
    await asyncio.to_thread(tree.generate)

    generated = tree.path("gen/python/shop/topology.py").read_text()
    assert f"'tally': Service('tally', {port}, {port - 40600})" in generated
    spec = json.loads(tree.path("mesh/out/openapi/openapi.json").read_text())
    assert "/api/v1/tallies/{name}" in spec["paths"]

    # `make up` in the copy would run it: a stack component after Kafka and the registry.
    component = tree.python(
        """
        import json
        from stack.components import COMPONENTS
        c = next(c for c in COMPONENTS if c.name == "tally")
        print(json.dumps({"command": list(c.command()), "deps": list(c.depends_on)}))
        """
    )
    assert component["command"][-2:] == ["-m", "services.tally.main"]
    assert {"kafka", "registry"} <= set(component["deps"])

    topics = tree.topics_of("tally")
    assert {t["name"] for t in topics} >= {topic, f"{topic}.dlq"}  # consumed: retry + DLQ
    admin = AdminClient({"bootstrap.servers": kafka.kafka_bootstrap})
    subject = f"{topic}-{RECORD}"
    registry = "http://127.0.0.1:8085"
    try:
        _create_topics(admin, topics)
        async with httpx.AsyncClient(base_url=registry, timeout=10) as reg:
            schema = tree.path("schemas/avro/shop/events/v1/TallyAdded.avsc").read_text()
            done = await reg.post(f"/subjects/{subject}/versions", json={"schema": schema})
            assert done.status_code == 200, done.text

        grpc_port, log = _free_port(), tmp_path / "tally.log"
        proc = tree.start(
            "services.tally.main",
            log,
            TALLY_GRPC_PORT=str(grpc_port),
            TALLY_METRICS_PORT=str(_free_port()),
            TALLY_WORKERS="1",
            TALLY_GROUP_ID=f"test.{run}.tally",
        )
        await wait_serving(grpc_port, proc, log)
        config, edge, admin_port = tree.envoy_config({"tally": [("127.0.0.1", grpc_port)]})
        envoy = PrivateEnvoy(config, tmp_path / "envoy", admin_port)
        await asyncio.to_thread(envoy.__enter__)
        gateway = tree.nginx(tmp_path / "nginx", edge)
        await asyncio.to_thread(gateway.__enter__)
        try:
            await _reach_the_rpc_and_the_consumer(tree, gateway.url, f"t-{run}")
        finally:
            await asyncio.to_thread(gateway.__exit__)
            await asyncio.to_thread(envoy.__exit__)
            tree.stop_all()
        await _read_the_events_on_the_broker(kafka.kafka_bootstrap, topic, f"t-{run}")
    finally:
        tree.stop_all()
        _delete_topics(admin, [t["name"] for t in topics])
        for fut in admin.delete_consumer_groups([f"test.{run}.tally"]).values():
            with contextlib.suppress(Exception):  # never joined (the test failed before)
                fut.result(30)
        async with httpx.AsyncClient(base_url=registry, timeout=10) as reg:
            await reg.delete(f"/subjects/{subject}")
            await reg.delete(f"/subjects/{subject}", params={"permanent": "true"})


async def _reach_the_rpc_and_the_consumer(tree: TreeCopy, base: str, name: str) -> None:
    """AddTally over REST and gRPC-Web through NGINX -> Envoy -> the service, until the
    count it answers shows its consumer has read the events the earlier calls published."""
    service = service_of(tree.path("gen/descriptor/shop.binpb"), SERVICE)
    method = service.methods_by_name["AddTally"]
    request, reply = message_class(method.input_type), message_class(method.output_type)
    calls, seen = 0, 0
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        first = await client.post(f"/api/v1/tallies/{name}")
        assert first.status_code == 200, first.text
        assert first.json() == {"name": name, "counted": "0"}  # int64 is a JSON string
        calls = 1

        bad = await client.post("/api/v1/tallies/Not_Valid")
        assert bad.status_code == 400, bad.text
        assert "name" in bad.text  # the field the pattern rule names

        deadline = time.monotonic() + 30
        while seen < 1:
            assert time.monotonic() < deadline, f"consumer read none of {calls} events"
            body = grpc_web_request(request(name=name).SerializeToString())
            path = f"/api/{SERVICE}/AddTally"
            web = await client.post(path, content=body, headers=GRPC_WEB_HEADERS)
            assert web.status_code == 200, web.text
            messages, trailers = grpc_web_parse(web.content, dict(web.headers))
            assert trailers["grpc-status"] == "0", trailers
            answer = reply.FromString(messages[0])
            assert answer.name == name
            assert 0 <= answer.counted <= calls  # only events of earlier calls
            seen, calls = answer.counted, calls + 1
            await asyncio.sleep(0.2)
    assert seen >= 1


async def _read_the_events_on_the_broker(bootstrap: str, topic: str, name: str) -> None:
    """The records the service published are on the topic, keyed by the tally's name and
    typed by their header (the service's consumer read them; this reads them again)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        assert end >= 2
        records = []
        while len(records) < end:
            batch = await consumer.getmany(tp, timeout_ms=2000)
            assert batch, f"read {len(records)} of {end} records"
            records += batch[tp]
    finally:
        await consumer.stop()
    assert {r.key for r in records} == {name.encode()}
    assert {dict(r.headers)["event_type"] for r in records} == {RECORD.encode()}


def _free_port() -> int:
    from mesh.testing import free_port

    return free_port()


def _create_topics(admin: AdminClient, topics: list[dict]) -> None:
    new = [
        NewTopic(
            t["name"], num_partitions=t["partitions"], replication_factor=1, config=t["config"]
        )
        for t in topics
    ]
    # A loaded broker (other test runs on the shared one) may take a while to answer.
    for fut in admin.create_topics(new, request_timeout=90).values():
        fut.result(120)


def _delete_topics(admin: AdminClient, names: list[str]) -> None:
    for fut in admin.delete_topics(names).values():
        with contextlib.suppress(Exception):  # never created (failed before): nothing to do
            fut.result(30)
