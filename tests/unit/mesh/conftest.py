"""Fixtures of the mesh generator tests: the API read from the committed descriptor set and
the committed Envoy config (read once per module)."""

from __future__ import annotations

import pytest
import yaml

from mesh import generate
from mesh.api import Api, load
from tests.unit.mesh.generated_config import OUT


@pytest.fixture(scope="module")
def api() -> Api:
    return load(generate.DESCRIPTOR)


@pytest.fixture(scope="module")
def envoy_cfg(api: Api) -> dict:
    return yaml.safe_load((OUT / "envoy" / "envoy.yaml").read_text())
