"""The topology generators (topology/generate.py): what they write follows the manifest and
nothing else. A service added to the manifest gets its compose service, Kubernetes workload
and a NetworkPolicy that opens exactly its declared calls; one Kafka version and our SMTP
sink everywhere; `make gen` twice writes nothing the second time."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from topology import compose, generate, k8s
from topology.manifest import MANIFEST, TOPIC_MAP, Topology, parse, topology


def _manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())


def _parse(data: dict[str, Any]) -> Topology:
    return parse(data, json.loads(TOPIC_MAP.read_text()))


def _with_wishlist(calls: list[str]) -> Topology:
    """The manifest plus a service that calls `calls` and consumes the first topic."""
    data = copy.deepcopy(_manifest())
    topic = next(iter(data["topics"]))
    data["services"]["wishlist"] = {
        "port": 50090,
        "postgres": {"database": "wishlist", "replica": False},
        "consumes": [topic],
        "calls": calls,
    }
    return _parse(data)


def _grpc_peers(policy: dict[str, Any], direction: str) -> dict[str, set[int]]:
    """name -> ports one direction of a policy opens to single named pods."""
    side = "from" if direction == "ingress" else "to"
    out: dict[str, set[int]] = {}
    for rule in policy["spec"][direction]:
        for peer in rule.get(side, []):
            name = peer.get("podSelector", {}).get("matchLabels", {}).get(k8s.NAME)
            if name:
                out.setdefault(name, set()).update(p["port"] for p in rule["ports"])
    return out


def _policies(t: Topology) -> dict[str, dict[str, Any]]:
    return {s.name: k8s.service_policy(t, s) for s in t.services}


@pytest.mark.parametrize("calls", [["product"], ["product", "user"], []])
def test_a_service_policy_opens_exactly_its_declared_calls(calls: list[str]) -> None:
    t = _with_wishlist(calls)
    policies = _policies(t)
    services = set(t.names)
    # Out: the services it calls, each on its gRPC port, and no other service.
    out = _grpc_peers(policies["wishlist"], "egress")
    assert {n: p for n, p in out.items() if n in services} == {
        c: {t.service(c).port} for c in calls
    }
    # In, on every service: its gRPC port from Envoy and from exactly its declared callers.
    for s in t.services:
        inbound = _grpc_peers(policies[s.name], "ingress")
        callers = {n for n, ports in inbound.items() if s.port in ports}
        assert callers == {"envoy", *t.callers_of(s.name)}, s.name
        assert ("wishlist" in callers) == (s.name in calls), s.name


def test_a_new_service_is_everywhere_it_runs() -> None:
    t = _with_wishlist(["product"])
    files = generate.render(t)
    doc = list(yaml.safe_load_all(files["k8s/generated/services/wishlist.yaml"]))
    kinds = [d["kind"] for d in doc]
    assert kinds == [
        "ServiceAccount",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ]
    deployment = doc[1]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in deployment["containers"][0]["env"]}
    assert env["WISHLIST_PRODUCT_ADDR"] == f"product:{t.service('product').port}"
    assert env["WISHLIST_GRPC_PORT"] == "50090"
    assert deployment["containers"][0]["readinessProbe"]["grpc"]["port"] == 50090
    assert deployment["initContainers"][0]["command"][-1] == "migrate"
    assert "  - services/wishlist.yaml\n" in files["k8s/generated/kustomization.yaml"]
    assert "CREATE DATABASE wishlist OWNER" in files["k8s/generated/stores/primary-init.sh"]
    for overlay in ("dev", "prod"):
        assert "shopmesh/wishlist" in files[f"k8s/generated/{overlay}/kustomization.yaml"]
    composed = yaml.safe_load(files["docker-compose.yml"])["services"]["wishlist"]
    assert composed["build"]["args"]["SERVICE"] == "wishlist"
    assert composed["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    # Locally and in compose every call goes through Envoy's internal listener.
    internal = t.infra("envoy").port("internal")
    assert composed["environment"]["WISHLIST_PRODUCT_ADDR"] == f"envoy:{internal}"
    # The shared parts let it in: Envoy reaches its port, Kafka and PostgreSQL admit it.
    shared = {p["metadata"]["name"]: p for p in k8s.shared_policies(t)}
    envoy_ports = {p["port"] for r in shared["envoy"]["spec"]["egress"] for p in r["ports"]}
    assert 50090 in envoy_ports
    for store in ("kafka", "postgres"):
        (expr,) = shared[store]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"]
        assert "wishlist" in expr["values"], store
    assert "n_wishlist -- calls --> n_product" in files["docs/topology.md"]


def test_one_kafka_version_and_our_mail_catcher_everywhere() -> None:
    t = topology()
    kafka = t.infra("kafka")
    files = generate.render(t)
    services = yaml.safe_load(files["docker-compose.yml"])["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{kafka.version}"
    kustomization = yaml.safe_load(files["k8s/generated/kustomization.yaml"])
    pinned = {i["name"]: i["newTag"] for i in kustomization["images"]}
    assert pinned["apache/kafka"] == kafka.version
    assert pinned["postgres"] == t.infra("postgres").image.split(":")[1]
    # Compose and the dev cluster run stack/smtp_sink.py from the project image.
    assert services["smtp-sink"]["build"]["target"] == "smtp-sink"
    dev = list(yaml.safe_load_all(files["k8s/generated/dev/smtp-sink.yaml"]))
    (deployment,) = [d for d in dev if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == t.infra("mail").image
    assert "mailpit" not in "".join(files.values()).lower()


def test_generate_twice_writes_nothing_the_second_time(tmp_path: Path) -> None:
    files = generate.render(topology())
    assert generate.write(files, tmp_path) == sorted(files)
    assert generate.write(generate.render(topology()), tmp_path) == []
    assert generate.stale(files, tmp_path) == []
    # A file in an owned directory that nothing generates any more is stale, then removed.
    leftover = tmp_path / "k8s" / "generated" / "services" / "gone.yaml"
    leftover.write_text("kind: Deployment\n")
    assert generate.stale(files, tmp_path) == ["k8s/generated/services/gone.yaml"]
    generate.write(files, tmp_path)
    assert not leftover.exists()


def test_compose_yaml_has_no_anchors() -> None:
    """Every service's environment is written out (an alias would hide shared dicts)."""
    text = compose.render(topology())
    assert "&id" not in text and "*id" not in text
