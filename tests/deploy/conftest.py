"""Deploy tests run offline: no Docker engine, no cluster. Tools come from
tools/deploy_tools.py (cached under ~/.cache/shopmesh/deploy-tools)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `deploy` and `tools` are folders of scripts, not installed
    sys.path.insert(0, str(ROOT))

from deploy import validate  # noqa: E402
from mesh.api import Service, load  # noqa: E402


@pytest.fixture(scope="session")
def schema_services() -> tuple[Service, ...]:
    """The services schemas/proto defines (via the descriptor set), with their ports."""
    services = tuple(load(ROOT / "gen" / "descriptor" / "shop.binpb").services)
    assert services, "the descriptor set defines no service"
    return services


@pytest.fixture(scope="module", params=validate.OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    """(name, documents) of each Kubernetes overlay as kustomize builds it."""
    return request.param, validate.kustomize_build(ROOT / "k8s" / "overlays" / request.param)
