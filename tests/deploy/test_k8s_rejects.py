"""Kubernetes manifests: the validation rejects a broken copy of the manifests (so the
validation of tests/deploy/test_k8s.py can fail)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import validate

ROOT = validate.ROOT


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    """k8s/ and the mesh output its kustomizations load (mesh/out), side by side."""
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    shutil.copytree(ROOT / "mesh" / "out", tmp_path / "mesh" / "out")
    return tmp_path / "k8s"


def _edit(path: Path, change: Any) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for d in docs:
        change(d)
    path.write_text(yaml.safe_dump_all(docs))


def test_rejects_grpc_probe_on_a_named_port(k8s_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        if d["kind"] == "Deployment":
            d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "grpc"

    _edit(k8s_copy / "generated" / "services" / "product.yaml", bad)
    with pytest.raises(validate.Invalid, match=r"livenessProbe\.grpc\.port"):
        validate.validate_overlay(k8s_copy / "overlays" / "dev")


def test_rejects_grpc_probe_on_a_port_the_container_does_not_serve(k8s_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        if d["kind"] == "Deployment":
            d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = 5999

    _edit(k8s_copy / "generated" / "services" / "order.yaml", bad)
    with pytest.raises(validate.Invalid, match="gRPC port 5999 is not a container port"):
        validate.validate_overlay(k8s_copy / "overlays" / "prod")


def test_rejects_a_deployment_without_containers(k8s_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        if d["kind"] == "Deployment":
            del d["spec"]["template"]["spec"]["containers"]

    _edit(k8s_copy / "generated" / "services" / "user.yaml", bad)
    with pytest.raises(validate.Invalid, match="'containers' is a required property"):
        validate.validate_overlay(k8s_copy / "overlays" / "dev")


def test_rejects_a_misspelled_field(k8s_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        if d["kind"] == "Service":
            d["spec"]["selectr"] = d["spec"].pop("selector")

    _edit(k8s_copy / "generated" / "services" / "auth.yaml", bad)
    with pytest.raises(validate.Invalid, match="'selectr' was unexpected"):
        validate.validate_overlay(k8s_copy / "overlays" / "dev")


def test_rejects_a_bad_istio_resource(k8s_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        if d["kind"] == "VirtualService":
            d["spec"]["http"][0]["timeout"] = 5  # must be a duration string

    _edit(k8s_copy.parent / "mesh" / "out" / "istio" / "order.yaml", bad)
    with pytest.raises(validate.Invalid, match=r"VirtualService/order: spec\.http\.0\.timeout"):
        validate.validate_overlay(k8s_copy / "overlays" / "prod")


def test_rejects_a_service_selecting_no_pod() -> None:
    docs = validate.kustomize_build(ROOT / "k8s" / "overlays" / "dev")
    broken = copy.deepcopy(docs)
    for d in broken:
        if d["kind"] == "Service" and d["metadata"]["name"] == "notification":
            d["spec"]["selector"] = {"app.kubernetes.io/name": "notifications"}
    assert any("matches no pod" in e for e in validate.cross_check(broken))
