"""`make lint`: every static check CI runs, in order, stopping at the first failure.

- ruff check + ruff format --check (gen/ and frontend/ excluded in pyproject.toml)
- buf lint (STANDARD) on schemas/proto
- buf breaking (FILE) against the last landed schemas, see _breaking_base()
- generated code is fresh: `make gen` changes nothing it writes (GENERATED)
- Avro schemas are compatible with the last landed ones (registry rules), when the
  registry's checker exists
- deploy: kustomize overlays, docker-compose.yml and Dockerfiles validate offline
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUF = str(ROOT / "node_modules" / ".bin" / "buf")
# Every tree `make gen` writes: the schemas' code, the mesh output and what
# topology/generate.py writes from schemas/topology.yaml (docker-compose.yml, k8s/generated,
# docs/topology.md, gen/python/shop/topology.py), and docs/config.md.
GENERATED = [
    "gen",
    "schemas/vendor",
    "mesh/out",
    "docker-compose.yml",
    "k8s/generated",
    "docs/topology.md",
    "docs/config.md",
]


def run(name: str, *cmd: str) -> None:
    print(f"lint: {name}", flush=True)
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        sys.exit(f"lint: {name} failed")


def git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def _breaking_base() -> str:
    """The commit whose schemas count as landed.

    SHOPMESH_BREAKING_BASE wins. Otherwise the merge base with origin/main when this
    checkout is ahead of it (a developer's branch), else the parent commit (CI runs on a
    clean clone of main, where HEAD is the submission itself).
    """
    explicit = os.environ.get("SHOPMESH_BREAKING_BASE")
    if explicit:
        return explicit
    head = git("rev-parse", "HEAD")
    upstream = git("merge-base", "HEAD", "origin/main")
    if upstream and upstream != head:
        return upstream
    return git("rev-parse", "HEAD~1")


def breaking() -> None:
    """buf breaking against an image of the base commit's schemas.

    The base commit's schemas/proto is exported to a temp dir beside today's buf.yaml and
    vendored protos (the rules and imports of today), built into an image, and compared
    with the working tree.
    """
    base = _breaking_base()
    if not base or not git("ls-tree", "-d", base, "schemas/proto"):
        print("lint: buf breaking skipped: the base commit has no schemas/proto yet")
        return
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "archive", base, "schemas/proto"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        shutil.copy(ROOT / "buf.yaml", Path(tmp) / "buf.yaml")
        shutil.copytree(ROOT / "schemas" / "vendor", Path(tmp) / "schemas" / "vendor")
        image = str(Path(tmp) / "base.binpb")
        run(f"buf build of {base[:10]}", BUF, "build", f"{tmp}/schemas/proto", "-o", image)
        run(
            f"buf breaking against {base[:10]}",
            BUF,
            "breaking",
            "schemas/proto",
            "--against",
            image,
        )


def main() -> None:
    run("ruff check", sys.executable, "-m", "ruff", "check", ".")
    run("ruff format --check", sys.executable, "-m", "ruff", "format", "--check", ".")
    run("gen (vendor protos, generate)", sys.executable, "tools/gen.py")
    run("buf lint", BUF, "lint")
    breaking()
    subprocess.run(["git", "add", "-N", *GENERATED], cwd=ROOT, capture_output=True)
    run("generated code is fresh", "git", "diff", "--exit-code", "--stat", "--", *GENERATED)
    run("docs/config.md is fresh", sys.executable, "tools/config_doc.py", "--check")
    if (ROOT / "registry" / "ci_check.py").exists():
        run("Avro compatibility", sys.executable, "-m", "registry.ci_check")
    run("deploy manifests (deploy/validate.py)", sys.executable, "deploy/validate.py")
    print("lint: all checks passed")


if __name__ == "__main__":
    main()
