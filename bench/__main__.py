"""Run every benchmark module in bench/ one after another (each bounded, loopback only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def modules() -> list[str]:
    names = sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))
    return [f"bench.{n}" for n in names]


def main() -> int:
    failed = []
    for module in modules():
        print(f"== {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module], cwd=HERE.parent).returncode != 0:
            failed.append(module)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
