"""Kubernetes carries the service identities and the token issuer as the runtime expects:
each service its own identity Secret (no shared key), the auth service the services' public
keys, and one ConfigMap value for the user-token issuer that the auth Deployment, every
verifier and Istio's RequestAuthentication all get (kustomize replacements), so changing it
in one place keeps them agreeing."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from deploy import validate
from mesh.services import SERVICES
from services.runtime.auth import DEFAULT_AUDIENCE, DEFAULT_ISSUER

ROOT = validate.ROOT
Docs = list[dict[str, Any]]


def _env(docs: Docs, name: str, container: str = "server") -> dict[str, dict]:
    (dep,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    spec = dep["spec"]["template"]["spec"]
    (c,) = [
        c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == container
    ]
    return {e["name"]: e for e in c.get("env", [])}


def _config_map(docs: Docs, ref: dict) -> dict[str, str]:
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == ref["name"]]
    return cm["data"]


@pytest.mark.parametrize("overlay", validate.OVERLAYS)
def test_each_service_holds_only_its_own_identity(overlay: str) -> None:
    docs = validate.kustomize_build(ROOT / "k8s" / "overlays" / overlay)
    for name in SERVICES:
        env = _env(docs, name)
        assert "SHOPMESH_SERVICE_KEY" not in env
        keys = {k: e for k, e in env.items() if k.endswith("_IDENTITY_KEY")}
        assert set(keys) == {f"{name.upper()}_IDENTITY_KEY"}, name
        ref = keys[f"{name.upper()}_IDENTITY_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"shopmesh-identity-{name}", "key": "identity-key"}
    auth = _env(docs, "auth")
    ref = auth["AUTH_SERVICE_PUBLIC_KEYS"]["valueFrom"]["configMapKeyRef"]
    assert ref["name"] in validate.EXTERNAL_CONFIG_MAPS  # made with the identity Secrets
    # The init container checks the same configuration before migrating.
    migrate = _env(docs, "auth", "migrate")
    assert {"AUTH_IDENTITY_KEY", "AUTH_SERVICE_PUBLIC_KEYS"} <= set(migrate)


def _issuers(docs: Docs) -> dict[str, tuple[str, str]]:
    """Who reads which (issuer, audience): every service Deployment and, with Istio, the
    RequestAuthentication's user-token rule."""
    out = {}
    for name in SERVICES:
        env = _env(docs, name)
        values = []
        for var in ("SHOPMESH_JWT_ISSUER", "SHOPMESH_JWT_AUDIENCE"):
            ref = env[var]["valueFrom"]["configMapKeyRef"]
            values.append(_config_map(docs, ref)[ref["key"]])
        out[name] = tuple(values)
    for ra in (d for d in docs if d["kind"] == "RequestAuthentication"):
        user = [
            r for r in ra["spec"]["jwtRules"] if not r["issuer"].startswith("shopmesh-service/")
        ]
        (rule,) = user
        out["istio"] = (rule["issuer"], rule["audiences"][0])
    return out


def test_the_issuer_is_one_value_everywhere_and_changes_in_one_place(tmp_path: Path) -> None:
    docs = validate.kustomize_build(ROOT / "k8s" / "overlays" / "prod")
    seen = _issuers(docs)
    assert set(seen) == {*SERVICES, "istio"}
    assert set(seen.values()) == {(DEFAULT_ISSUER, DEFAULT_AUDIENCE)}
    # An operator changes the ConfigMap literal only: auth, the services and Istio follow.
    copy = tmp_path / "k8s"
    shutil.copytree(ROOT / "k8s", copy)
    shutil.copytree(ROOT / "mesh" / "out", tmp_path / "mesh" / "out")
    base = copy / "base" / "kustomization.yaml"
    text, n = re.subn(
        r"literals: \[issuer=[^,]+, audience=[^\]]+\]",
        "literals: [issuer=https://login.example.com, audience=shop-x]",
        base.read_text(),
    )
    assert n == 1
    base.write_text(text)
    changed = _issuers(validate.kustomize_build(copy / "overlays" / "prod"))
    assert set(changed) == set(seen)
    assert set(changed.values()) == {("https://login.example.com", "shop-x")}
