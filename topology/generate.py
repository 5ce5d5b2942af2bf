"""`python -m topology.generate [--check]`: schemas/topology.yaml (+ the descriptor set) ->
every file derived from the topology (run by `make gen`, after the descriptor set).

Deterministic: only files whose bytes change are rewritten, and files of an owned directory
that this generator no longer produces are removed. `--check` writes nothing and exits 1
when an output is stale (`make lint` fails then).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from topology import constants, docs
from topology.manifest import ROOT, ManifestError, Topology, load

# Outputs: relative path -> renderer. Directories listed in OWNED hold nothing else.
Renderer = Callable[[Topology], dict[str, str]]
OWNED: tuple[str, ...] = ("k8s/generated",)
# Every path this generator writes (the freshness check of `make lint` covers them).
OUTPUTS: tuple[str, ...] = (
    "gen/python/shop/topology.py",
    "docker-compose.yml",
    "docs/topology.md",
    *OWNED,
)


def _constants(t: Topology) -> dict[str, str]:
    return {"gen/python/shop/topology.py": constants.render(t)}


def _compose(t: Topology) -> dict[str, str]:
    from topology import compose  # imports the runtime: see main()

    return {"docker-compose.yml": compose.render(t)}


def _docs(t: Topology) -> dict[str, str]:
    return {"docs/topology.md": docs.render(t)}


def _k8s(t: Topology) -> dict[str, str]:
    from topology import k8s  # imports the runtime: see main()

    return k8s.render(t)


RENDERERS: tuple[Renderer, ...] = (_constants, _compose, _docs, _k8s)


def render(t: Topology) -> dict[str, str]:
    files: dict[str, str] = {}
    for renderer in RENDERERS:
        files.update(renderer(t))
    return dict(sorted(files.items()))


def stale(files: dict[str, str], root: Path = ROOT) -> list[str]:
    out = [r for r, text in files.items() if _read(root / r) != text]
    for sub in OWNED:
        for path in sorted((root / sub).rglob("*")) if (root / sub).exists() else []:
            rel = path.relative_to(root).as_posix()
            if path.is_file() and rel not in files:
                out.append(rel)
    return out


def write(files: dict[str, str], root: Path = ROOT) -> list[str]:
    changed = stale(files, root)
    for rel in changed:
        path = root / rel
        if rel not in files:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(files[rel])
        if rel.endswith(".sh"):
            tmp.chmod(0o755)
        tmp.replace(path)
    return changed


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m topology.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if an output is stale")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        t = load()
        if not args.check:
            # compose and k8s read the runtime's auth defaults, and the runtime imports the
            # constants this writes (shop.topology), which `buf generate` has just removed
            # with the rest of gen/python in `make gen`: they come first.
            for rel, text in _constants(t).items():
                if _read(ROOT / rel) != text:
                    (ROOT / rel).parent.mkdir(parents=True, exist_ok=True)
                    (ROOT / rel).write_text(text)
        files = render(t)
    except ManifestError as exc:
        print(f"topology.generate: {exc}", file=sys.stderr)
        return 2
    if args.check:
        diff = stale(files)
        for rel in diff:
            print(f"stale: {rel}")
        return 1 if diff else 0
    changed = write(files)
    if not args.quiet:
        what = ", ".join(changed) if changed else "nothing changed"
        print(f"topology.generate: {len(files)} files ({what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
