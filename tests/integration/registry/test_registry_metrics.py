"""The registry's GET /metrics on a real server process: HTTP RED per route template."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.registry.conftest import RegistryProcess

pytestmark = pytest.mark.stack
CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
SCHEMA = json.dumps({"type": "record", "name": "M", "fields": [{"name": "a", "type": "int"}]})


def samples(url: str) -> dict[tuple[str, frozenset], float]:
    resp = httpx.get(f"{url}/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(resp.text)
        for s in fam.samples
    }


def count(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_by_route_template_and_code(
    registry_server: RegistryProcess,
) -> None:
    url, subject = registry_server.url, f"metrics-{uuid.uuid4().hex[:8]}"
    before = samples(url)
    versions = {"route": "/subjects/{subject}/versions"}
    ok = httpx.post(f"{url}/subjects/{subject}/versions", json={"schema": SCHEMA}, headers=CT)
    assert ok.status_code == 200
    missing = httpx.get(f"{url}/subjects/nope-{subject}/versions")
    assert missing.status_code == 404
    assert httpx.get(f"{url}/no/such/route").status_code == 404
    after = samples(url)

    def delta(name: str, **labels: str) -> float:
        return count(after, name, **labels) - count(before, name, **labels)

    assert delta("http_requests_total", **versions, method="POST", code="200") == 1
    # A registry error (40401 subject not found) is counted with the status the client got.
    assert delta("http_requests_total", **versions, method="GET", code="404") == 1
    assert delta("http_requests_total", route="unmatched", method="GET", code="404") == 1
    assert delta("http_request_duration_seconds_count", **versions, method="POST") == 1
    # Route templates only: a subject name never becomes a label value.
    assert not any(subject in str(labels) for _, labels in after)
    # Scrapes are not API traffic.
    assert not any(dict(labels).get("route") == "/metrics" for _, labels in after)
    assert count(after, "http_requests_in_flight") == 0
