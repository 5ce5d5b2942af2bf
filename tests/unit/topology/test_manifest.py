"""schemas/topology.yaml: the repository's manifest loads, and a broken one fails with one
line naming the bad key (never a KeyError or a traceback from deep inside a generator)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from topology.manifest import MANIFEST, TOPIC_MAP, ManifestError, parse, topology

ROOT = Path(__file__).resolve().parents[3]


def _manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())


def _topic_map() -> dict[str, Any]:
    return json.loads(TOPIC_MAP.read_text())


def test_the_manifest_loads_with_every_service_and_topic() -> None:
    t = topology()
    assert t.names[:5] == ("product", "user", "order", "notification", "auth")
    assert {"cart", "currency", "shipping", "recommendation"} <= set(t.names)
    order = t.service("order")
    assert (order.metrics_port, order.calls) == (
        order.port - 40600,
        ("product", "user", "currency", "shipping"),
    )
    assert order.mongo and order.mongo.database == "order" and order.postgres is None
    assert {x.name for x in t.topics} == set(_topic_map())
    # Retry stages count once: the number of delays; a DLQ per consumed topic.
    names = [x.name for x in t.all_topics()]
    for base in t.consumed:
        stages = [n for n in names if n.startswith(base + ".retry.")]
        assert len(stages) == len(t.retry_delays_s)
        assert base + ".dlq" in names


def test_kafka_runs_one_version_locally_and_in_images() -> None:
    kafka = topology().infra("kafka")
    assert kafka.image == f"apache/kafka:{kafka.version}" and not kafka.drift


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ManifestError) as info:
        parse(data, _topic_map())
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["services"]["order"]["calls"].append("prodcut"),
            r"services\.order\.calls\[4\]: 'prodcut' is not a service",
        ),
        (
            lambda d: d["services"]["order"]["calls"].append("order"),
            r"services\.order\.calls\[4\]: 'order' is itself",
        ),
        (
            lambda d: d["services"]["order"].update(port=str(d["services"]["order"]["port"])),
            r"services\.order\.port: expected an integer, got a string",
        ),
        (
            lambda d: d["services"]["order"].update(port=True),
            r"services\.order\.port: expected an integer, got a boolean",
        ),
        (
            lambda d: d["services"]["order"].update(port=70000),
            r"services\.order\.port: port 70000 out of range",
        ),
        (
            lambda d: d["services"]["order"].update(port=50051),
            r"services\.order\.port: port 50051 is already services\.product\.port's",
        ),
        (
            lambda d: d["services"]["order"].update(prot=1),
            r"services\.order\.prot: unknown key 'prot' \(expected one of port, ",
        ),
        (
            lambda d: d["services"]["user"].update(produces=["shop.user.v1"]),
            r"services\.user\.produces\[0\]: 'shop.user.v1' is not a topic of "
            r"schemas/avro/topics.json",
        ),
        (
            lambda d: d["services"]["user"].pop("produces"),
            r"services\.notification\.consumes: 'shop.users.v1' is consumed but no service",
        ),
        (
            lambda d: d["services"]["product"]["postgres"].update(replica="yes"),
            r"services\.product\.postgres\.replica: expected true or false",
        ),
        (
            lambda d: d["services"]["auth"]["secrets"].update(kek="x/y"),
            r"services\.auth\.secrets\.kek: an upper-case variable suffix",
        ),
        (
            lambda d: d["services"]["auth"]["secrets"].update(KEK="just-a-name"),
            r"services\.auth\.secrets\.KEK: expected 'secret/key' or 'configmap:name/key'",
        ),
        (
            lambda d: d["defaults"].update(replicas=[3, 2]),
            r"defaults\.replicas: expected \[min, max\]",
        ),
        (
            lambda d: d["topics"]["retry"].update(delays_s=[]),
            r"topics\.retry\.delays_s: one or more delays",
        ),
        (
            lambda d: d["topics"].pop("shop.users.v1"),
            r"topics: no entry for 'shop.users.v1'",
        ),
        (
            lambda d: d["infrastructure"]["kafka"].update(image="apache/kafka:4.1.0"),
            r"infrastructure\.kafka\.image: image tag '4.1.0' is not local version '4.3.1'",
        ),
        (
            lambda d: d["infrastructure"]["kafka"]["local"]["ports"].update(broker=8085),
            r"infrastructure\.registry\.local\.ports\.http: port 8085 is already "
            r"infrastructure\.kafka\.local\.ports\.broker's",
        ),
        (
            lambda d: d.update(service={}),
            r"^schemas/topology\.yaml: service: unknown key 'service'",
        ),
    ],
)
def test_a_broken_manifest_names_the_bad_key(change: Any, expected: str) -> None:
    data = copy.deepcopy(_manifest())
    change(data)
    assert re.search(expected, _error(data)), _error(data)


def test_generated_constants_follow_the_manifest() -> None:
    """The services' defaults come from gen/python/shop/topology.py: same ports, topics."""
    from shop import topology as generated

    t = topology()
    for s in t.services:
        assert generated.SERVICES[s.name].port == s.port
        assert generated.SERVICES[s.name].metrics_port == s.metrics_port
    assert t.retry_delays_s == generated.RETRY_DELAYS_S
    assert [x.name for x in generated.TOPICS] == [x.name for x in t.all_topics()]
    assert generated.ORDERS_TOPIC == "shop.orders.v1"


def test_a_schema_caller_the_manifest_does_not_let_call_is_refused(monkeypatch) -> None:
    """policy.callers (the schema) may name only callers whose manifest entry declares the
    call: the manifest's calls are what opens the network path."""
    from mesh import api

    real = api.calls
    monkeypatch.setattr(api, "calls", lambda name: () if name == "order" else real(name))
    with pytest.raises(
        api.ApiError,
        match=r"policy\.callers names 'order', but schemas/topology\.yaml "
        r"services\.order\.calls does not list '(product|user)'",
    ):
        api.load(ROOT / "gen" / "descriptor" / "shop.binpb")
