"""Demo data in the deployments, as `make up` loads it locally (topology/demo.py): the dev
overlay runs each manifest `demo` loader once as a Job in the service's image, labelled so
that no Service, PDB or service policy selects it, reaching the PostgreSQL primary and
nothing else; the prod overlay loads none; docker-compose runs each loader after its
service is healthy."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from deploy import validate
from topology import topology
from topology.demo import NAME, demo_services

ROOT = validate.ROOT
Docs = list[dict[str, Any]]


@pytest.fixture(scope="module")
def dev() -> Docs:
    return validate.kustomize_build(ROOT / "k8s" / "overlays" / "dev")


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_the_manifest_names_demo_loaders() -> None:
    assert {s.name for s in demo_services(topology())} >= {"product", "user", "currency"}


def test_dev_runs_each_demo_loader_once_in_its_services_image(dev: Docs) -> None:
    jobs = {d["metadata"]["name"]: d for d in dev if d["kind"] == "Job"}
    for s in demo_services(topology()):
        job = jobs[f"{s.name}-demo"]
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == ["python", "-m", s.demo]
        assert container["image"].split(":")[0] == f"shopmesh/{s.name}"
        env = {e["name"]: e for e in container["env"]}
        assert env["SHOPMESH_ENV"]["value"] == "dev"  # the demo accounts refuse prod
        assert s.env("IDENTITY_KEY") not in env  # a loader calls no service
        assert f"{s.env('DB_NAME')}" in env and f"{s.env('DB_PASSWORD')}" in env
        assert pod["restartPolicy"] == "OnFailure" and pod["securityContext"]["runAsNonRoot"]
        labels = job["spec"]["template"]["metadata"]["labels"]
        for d in dev:
            spec = d.get("spec") or {}
            if d["kind"] == "Service" and spec.get("selector"):
                assert not _selects(spec["selector"], labels), (d["metadata"]["name"], labels)
            if d["kind"] == "PodDisruptionBudget":
                assert not _selects(spec["selector"]["matchLabels"], labels)


def test_demo_pods_reach_the_primary_and_nothing_else(dev: Docs) -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in dev if d["kind"] == "NetworkPolicy"}
    demo = policies["demo-data"]
    assert demo["ingress"] == []
    (egress,) = demo["egress"]
    assert egress["to"] == [{"podSelector": {"matchLabels": {NAME: "postgres-primary"}}}]
    assert [p["port"] for p in egress["ports"]] == [5432]
    into_pg = policies["postgres-from-demo-data"]
    assert into_pg["podSelector"]["matchLabels"] == {NAME: "postgres-primary"}
    (rule,) = into_pg["ingress"]
    assert [p["port"] for p in rule["ports"]] == [5432]


def test_prod_loads_no_demo_data() -> None:
    prod = validate.kustomize_build(ROOT / "k8s" / "overlays" / "prod")
    assert not [d for d in prod if d["kind"] == "Job" and d["metadata"]["name"].endswith("-demo")]
    assert not [d for d in prod if d["metadata"]["name"] == "demo-data"]


def test_compose_runs_each_loader_after_its_service_is_healthy() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for s in demo_services(topology()):
        demo = services[f"{s.name}-demo"]
        assert demo["command"] == ["python", "-m", s.demo]
        assert demo["image"] == services[s.name]["image"]
        assert demo["environment"] == services[s.name]["environment"]
        assert demo["depends_on"] == {s.name: {"condition": "service_healthy"}}
        assert demo["restart"] == "no"
