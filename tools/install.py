"""Install the project's Python and Node tooling, once per change of its manifests.

`make install` (and so `make up`, `make test`, `make gen`, `make lint`) calls this. It is
idempotent and fast when nothing changed: a stamp under .build/ records the hash of each
manifest it installed from. Servers (PostgreSQL, Kafka, ...) are installed by the stack
runner (python -m stack up), not here.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMPS = ROOT / ".build" / "stamps"


def _digest(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        if f.exists():
            h.update(f.read_bytes())
    return h.hexdigest()


def _step(name: str, manifests: tuple[Path, ...], command: list[str], cwd: Path = ROOT) -> None:
    stamp = STAMPS / name
    digest = _digest(*manifests)
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"install: {name} ...", flush=True)
    result = subprocess.run(command, cwd=cwd)
    if result.returncode != 0:
        sys.exit(f"install: {name} failed (exit {result.returncode}): {' '.join(command)}")
    STAMPS.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest)


def main() -> None:
    _step(
        "python",
        (ROOT / "pyproject.toml",),
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-e",
            ".[dev]",
        ],
    )
    node_modules = ROOT / "node_modules" / ".bin" / "buf"
    if not node_modules.exists():
        (STAMPS / "node").unlink(missing_ok=True)
    _step(
        "node",
        (ROOT / "package.json", ROOT / "package-lock.json"),
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
    )


if __name__ == "__main__":
    main()
