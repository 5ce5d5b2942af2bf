"""Installing what a component needs: Debian packages (apt, kept from starting their own
services on our ports) and pinned Python distributions (pip)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stack.model import Step
from stack.shell import StackError, run_cmd


def apt_install(packages: list[str], log: Path) -> None:
    if os.geteuid() != 0:
        raise StackError("apt", f"need root to apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Debian's maintainer scripts would start their own nginx/prometheus/postgres on our
    # ports; a policy-rc.d that answers 101 keeps them from starting anything.
    policy = Path("/usr/sbin/policy-rc.d")
    created = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        created = True
    try:
        # Skip the slow `apt-get update` when the package lists already know the packages.
        probe = subprocess.run(
            ["apt-cache", "policy", *packages], capture_output=True, text=True, check=False
        )
        if "Candidate: (none)" in probe.stdout or probe.stdout.count("Candidate:") < len(packages):
            run_cmd(["apt-get", "update"], "apt", log, env=env)
        run_cmd(
            ["apt-get", "install", "-y", "--no-install-recommends", *packages], "apt", log, env=env
        )
    finally:
        if created:
            policy.unlink(missing_ok=True)


def pip_step(distribution: str, module: str) -> Step:
    """Install a Python distribution at the version pinned in pyproject.toml if `module`
    cannot be imported (a fresh clone where `pip install -e .` has not run yet)."""
    import importlib.util
    import re
    import tomllib

    from stack.model import REPO_ROOT

    def present() -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            return False

    def install() -> None:
        deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        pins = [d for d in deps if re.split(r"[\[=<>~ ]", d, maxsplit=1)[0] == distribution]
        spec = pins[0] if pins else distribution
        run_cmd([sys.executable, "-m", "pip", "install", "-q", spec], distribution)
        importlib.invalidate_caches()

    return Step(f"pip {distribution}", present, install)
