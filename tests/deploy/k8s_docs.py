"""What the Kubernetes tests share: a built overlay's documents, finding one of them, and
a NetworkPolicy's edges as readable (peer, port) pairs."""

from __future__ import annotations

from typing import Any

Docs = list[dict[str, Any]]


def _one(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _peer(peer: dict[str, Any]) -> str:
    """A NetworkPolicy peer as one readable string: `name=x`, `component=x`, `ns=x`, `any`."""
    parts = []
    if "namespaceSelector" in peer:
        labels = peer["namespaceSelector"].get("matchLabels", {})
        parts.append(f"ns={labels.get('kubernetes.io/metadata.name', labels)}")
    pods = peer.get("podSelector")
    if pods is not None:
        labels = pods.get("matchLabels", {})
        exprs = pods.get("matchExpressions", [])
        for key, value in sorted(labels.items()):
            parts.append(f"{key.removeprefix('app.kubernetes.io/')}={value}")
        for e in exprs:
            assert e["operator"] == "In", e
            parts.append(f"{e['key'].removeprefix('app.kubernetes.io/')} in {sorted(e['values'])}")
        if not labels and not exprs:
            parts.append("pods=all")
    return ",".join(parts) or "any"


def _edges(docs: Docs, name: str, direction: str) -> set[tuple[str, int]]:
    """Every (peer, port) one policy opens in `direction` ("ingress" or "egress")."""
    side = "to" if direction == "egress" else "from"
    edges = set()
    for rule in _one(docs, "NetworkPolicy", name)["spec"].get(direction, []):
        peers = [_peer(p) for p in rule.get(side, [])] or ["any"]
        for peer in peers:
            for port in rule["ports"]:
                edges.add((peer, port["port"]))
    return edges
