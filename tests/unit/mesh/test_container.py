"""The container variants of the mesh output (mesh/container.py): the envoy image's config
reaches every service by name on its manifest port and listens on every interface, and one
rendered for another token issuer checks that issuer and audience only."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from mesh import container, generate
from mesh.api import load
from services.runtime.auth import DEFAULT_AUDIENCE, DEFAULT_ISSUER
from topology import topology


@pytest.fixture(scope="module")
def api():
    return load(generate.DESCRIPTOR)


def _walk(node: Any, key: str) -> list[Any]:
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            found += [v] if k == key else []
            found += _walk(v, key)
    elif isinstance(node, list):
        for v in node:
            found += _walk(v, key)
    return found


def test_upstreams_are_the_services_by_name_on_their_manifest_ports(api) -> None:
    config = container.envoy_config(api)
    endpoints = {
        (sock["address"], sock["port_value"])
        for c in config["static_resources"]["clusters"]
        for sock in _walk(c.get("load_assignment", {}), "socket_address")
    }
    ports = {s.name: s.port for s in topology().services}
    for s in api.services:
        assert (s.short, ports[s.short]) in endpoints, s.short
    listeners = {
        ln["address"]["socket_address"]["address"] for ln in config["static_resources"]["listeners"]
    }
    assert listeners == {"0.0.0.0"}
    assert config["admin"]["address"]["socket_address"]["address"] == "0.0.0.0"
    for cluster in config["static_resources"]["clusters"]:
        assert cluster.get("type") != "STATIC", cluster["name"]  # names need DNS


def test_another_issuer_replaces_the_default_everywhere(api) -> None:
    default = generate.container_envoy_yaml(api)
    other = generate.container_envoy_yaml(api, "https://login.example.com", "shop-x")
    assert DEFAULT_ISSUER in default
    issuers = set(_walk(yaml.safe_load(other), "issuer"))
    assert "https://login.example.com" in issuers
    assert DEFAULT_ISSUER not in other
    audiences = {a for value in _walk(yaml.safe_load(other), "audiences") for a in value}
    assert "shop-x" in audiences and DEFAULT_AUDIENCE not in audiences
