"""`python deploy/validate.py`: offline validation of everything under deploy/, k8s/ and
docker-compose.yml. No cluster, no Docker engine, no network beyond the Go module proxy
(first run only, see tools/deploy_tools.py).

- k8s: `kustomize build` of each overlay; every core resource validated strictly (unknown
  fields rejected) with kubernetes-validate's bundled schemas; every Istio resource
  validated against the openAPIV3Schema of Istio's own CRDs (Go module istio.io/api),
  made strict the way kubeconform does (additionalProperties: false); then cross-checks
  a schema cannot express: a gRPC probe aims at a declared container port, a Service and
  a NetworkPolicy select existing pods, every referenced ConfigMap exists.
- compose: `docker compose config -q`.
- Dockerfiles: hadolint.
The generated parts (k8s/generated, docker-compose.yml, mesh/out) are checked for freshness
by `make lint`; this validates what they and the hand-written files say.

Imports only the stdlib, PyYAML, jsonschema and kubernetes-validate.
"""

from __future__ import annotations

import copy
import functools
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jsonschema  # noqa: E402
import kubernetes_validate  # noqa: E402
import yaml  # noqa: E402

from tools import deploy_tools  # noqa: E402
from topology import topology  # noqa: E402

K8S_VERSION = "1.33.0"
OVERLAYS = ("dev", "prod")
DOCKERFILES = ROOT / "deploy" / "docker"
# Created outside the repo on purpose (no secret values committed): deploy/README.md.
# Each service's identity Secret, and the Secrets and ConfigMaps its manifest entry names.
EXTERNAL_SECRETS = {"shopmesh-postgres", "shopmesh-grafana"} | {
    f"shopmesh-identity-{s.name}" for s in topology().services
}
EXTERNAL_SECRETS |= {r.name for s in topology().services for r in s.secrets if r.kind == "secret"}
# The services' public keys: made in the same step as their identity Secrets.
EXTERNAL_CONFIG_MAPS = {
    r.name for s in topology().services for r in s.secrets if r.kind == "configmap"
}


class Invalid(Exception):
    """A manifest, compose file or Dockerfile failed validation; the message lists why."""


def kustomize_build(path: Path) -> list[dict[str, Any]]:
    cmd = [*deploy_tools.kustomize_cmd(), str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise Invalid(f"kustomize build {path}: {done.stderr.strip()}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _name(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def _strict(schema: Any) -> Any:
    """kubeconform's strict mode: objects with declared properties allow no others."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    return schema


@functools.cache
def istio_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema of the resource's spec."""
    schemas = {}
    for crd in yaml.safe_load_all(deploy_tools.istio_crds().read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served"):
                continue
            spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
            schemas[(f"{group}/{version['name']}", kind)] = _strict(copy.deepcopy(spec))
    return schemas


def validate_resource(doc: dict[str, Any]) -> list[str]:
    api = doc.get("apiVersion", "")
    if api.endswith(".istio.io/v1") or ".istio.io/" in api:
        schema = istio_schemas().get((api, doc.get("kind", "")))
        if schema is None:
            return [f"{_name(doc)}: no Istio CRD serves {api} {doc.get('kind')}"]
        extra = set(doc) - {"apiVersion", "kind", "metadata", "spec"}
        errors = [f"{_name(doc)}: unknown top-level fields {sorted(extra)}"] if extra else []
        validator = jsonschema.Draft7Validator(schema)
        for err in validator.iter_errors(doc.get("spec", {})):
            path = ".".join(str(p) for p in err.absolute_path)
            errors.append(f"{_name(doc)}: spec.{path}: {err.message}")
        return errors
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.absolute_path)
        return [f"{_name(doc)}: {path}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError as err:
        return [f"{_name(doc)}: {err.message}"]
    return []


def _pod_specs(docs: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) of every Deployment, StatefulSet and Job."""
    kinds = {"Deployment", "StatefulSet", "Job"}
    return [(d, d["spec"]["template"]) for d in docs if d.get("kind") in kinds]


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _selects(sel: dict[str, Any], labels: dict[str, str]) -> bool:
    if not _matches(sel.get("matchLabels", {}), labels):
        return False
    for expr in sel.get("matchExpressions", []):
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def cross_check(docs: list[dict[str, Any]]) -> list[str]:
    errors = []
    pods = _pod_specs(docs)
    labels = [t["metadata"].get("labels", {}) for _, t in pods]
    config_maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    config_maps |= EXTERNAL_CONFIG_MAPS
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"} | EXTERNAL_SECRETS
    for workload, template in pods:
        spec = template["spec"]
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            ports = {p["containerPort"] for p in c.get("ports", [])}
            names = {p.get("name") for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                grpc = c.get(probe, {}).get("grpc")
                if grpc and grpc.get("port") not in ports:
                    errors.append(
                        f"{_name(workload)}: {c['name']} {probe} gRPC port {grpc.get('port')}"
                        f" is not a container port {sorted(ports)}"
                    )
                http = c.get(probe, {}).get("httpGet")
                if http and http.get("port") not in ports | names:
                    errors.append(f"{_name(workload)}: {probe} port {http.get('port')} unknown")
            refs = [e.get("valueFrom", {}) for e in c.get("env", [])]
            refs += [e for e in c.get("envFrom", [])]
            for ref in refs:
                cm = (ref.get("configMapKeyRef") or ref.get("configMapRef") or {}).get("name")
                if cm and cm not in config_maps:
                    errors.append(f"{_name(workload)}: ConfigMap {cm} does not exist")
                sec = (ref.get("secretKeyRef") or ref.get("secretRef") or {}).get("name")
                if sec and sec not in secrets:
                    errors.append(f"{_name(workload)}: Secret {sec} is not documented")
        for vol in spec.get("volumes", []):
            cm = vol.get("configMap", {}).get("name")
            if cm and cm not in config_maps:
                errors.append(f"{_name(workload)}: volume ConfigMap {cm} does not exist")
    for d in docs:
        selector = d["spec"].get("selector") if d["kind"] == "Service" else None
        if selector and not any(_matches(selector, lab) for lab in labels):
            errors.append(f"{_name(d)}: selector {selector} matches no pod")
        if d["kind"] == "NetworkPolicy":
            sel = d["spec"]["podSelector"]
            if sel and not any(_selects(sel, lab) for lab in labels):
                errors.append(f"{_name(d)}: podSelector matches no pod")
    return errors


def validate_docs(docs: list[dict[str, Any]]) -> list[str]:
    errors = [e for d in docs for e in validate_resource(d)]
    return errors + cross_check(docs)


def validate_overlay(path: Path) -> list[dict[str, Any]]:
    docs = kustomize_build(path)
    errors = validate_docs(docs)
    if errors:
        raise Invalid(f"{path}:\n  " + "\n  ".join(errors))
    return docs


def compose_config(compose_file: Path = ROOT / "docker-compose.yml") -> dict[str, Any]:
    cmd = [*deploy_tools.docker_compose(), "-f", str(compose_file), "config", "--format", "json"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=compose_file.parent)
    if done.returncode != 0:
        raise Invalid(f"docker compose config: {done.stderr.strip()}")
    return yaml.safe_load(done.stdout)


def hadolint(paths: Iterable[Path]) -> None:
    files = [str(p) for p in paths]
    done = subprocess.run([deploy_tools.hadolint(), *files], capture_output=True, text=True)
    if done.returncode != 0:
        raise Invalid(f"hadolint:\n{done.stdout}{done.stderr}")


def main() -> int:
    try:
        for overlay in OVERLAYS:
            docs = validate_overlay(ROOT / "k8s" / "overlays" / overlay)
            print(f"deploy: k8s/overlays/{overlay}: {len(docs)} resources valid")
        services = compose_config()["services"]
        print(f"deploy: docker-compose.yml: {len(services)} services valid")
        dockerfiles = sorted(DOCKERFILES.glob("*.Dockerfile"))
        hadolint(dockerfiles)
        print(f"deploy: hadolint: {len(dockerfiles)} Dockerfiles clean")
    except (Invalid, deploy_tools.ToolError) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
