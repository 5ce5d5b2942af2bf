"""The local stack's services are the manifest's (schemas/topology.yaml): one component per
service, started after what its entry says it uses, its calls routed through Envoy's
internal listener, and the infrastructure at the manifest's versions."""

from __future__ import annotations

import re
from pathlib import Path

from stack import components, kafka
from topology import topology

ROOT = Path(__file__).resolve().parents[3]


def test_every_manifest_service_is_a_component_with_its_port_and_module() -> None:
    by_name = {c.name: c for c in components.COMPONENTS}
    for s in topology().services:
        comp = by_name[s.name]
        assert comp.health.port == s.port  # type: ignore[attr-defined]
        assert comp.command()[-1] == s.module
        env = comp.resolved_env()
        assert env[f"{s.prefix}_METRICS_PORT"] == str(s.metrics_port)
        assert env[f"{s.prefix}_WORKERS"] == str(s.workers.local)


def test_a_service_starts_after_what_it_uses() -> None:
    by_name = {c.name: c for c in components.COMPONENTS}
    order, notification, product = (by_name[n] for n in ("order", "notification", "product"))
    # Its store, the broker and registry it publishes through, Envoy (its calls go through
    # the internal listener) and every service the manifest says it calls.
    calls = set(topology().service("order").calls)
    assert {"product", "user"} <= calls
    assert set(order.depends_on) == {"ferretdb", "kafka", "registry", "envoy", *calls}
    assert {"smtp-sink", "user", "order", "kafka", "postgres-replica"} <= set(
        notification.depends_on
    )
    assert set(product.depends_on) == {"postgres-primary", "postgres-replica"}


def test_calls_go_through_the_mesh_internal_listener() -> None:
    for s in topology().services:
        env = {c.name: c for c in components.COMPONENTS}[s.name].resolved_env()
        addrs = {k: v for k, v in env.items() if k.endswith("_ADDR")}
        assert addrs == {f"{s.prefix}_{c.upper()}_ADDR": components.MESH_INTERNAL for c in s.calls}


def test_infrastructure_runs_the_manifest_versions() -> None:
    assert topology().infra("kafka").version == kafka.VERSION
    go_mod = (ROOT / "stack" / "ferretdb" / "go.mod").read_text()
    pinned = re.search(r"github.com/FerretDB/FerretDB (v\S+)", go_mod)
    assert pinned and pinned.group(1) == topology().infra("mongo").version
    # The Kafka jars' version is passed to mvn, so the pom holds none of its own.
    assert "<kafka.version>" not in (ROOT / "stack" / "kafka" / "pom.xml").read_text()
