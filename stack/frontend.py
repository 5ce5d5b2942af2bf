"""The storefront build: `npm ci` when frontend/node_modules is missing or stale, then
`tsc -b && vite build` into frontend/dist (which NGINX serves) when any input changed.

As a stack component it is a small watcher: the build runs in the install phase of
`make up` (so dist exists before NGINX starts), and the process then rebuilds dist when
frontend sources or gen/ts change while the stack is up. Stamps under .build/stamps make
an unchanged tree cost one hash pass, no npm call.

Run alone: python -m stack.frontend [--watch]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from services.product import pictures
from stack.model import REPO_ROOT, Component, Custom, Step, state_dir

FRONTEND = REPO_ROOT / "frontend"
DIST = FRONTEND / "dist"
STAMPS = REPO_ROOT / ".build" / "stamps"
# Everything the bundle is made from. The generated clients are inputs too.
INPUT_FILES = ("package.json", "package-lock.json", "index.html", "vite.config.ts", "tsconfig.json",
               "tsconfig.app.json", "tsconfig.node.json")  # fmt: skip
INPUT_DIRS = (FRONTEND / "src", FRONTEND / "public", REPO_ROOT / "gen" / "ts")
PICTURES = FRONTEND / "public" / "images" / "products"
# What the product pictures are drawn from.
PICTURE_INPUTS = (
    REPO_ROOT / "services" / "product" / "pictures.py",
    REPO_ROOT / "services" / "product" / "demo_catalog.py",
)
LOCK_FILES = (FRONTEND / "package.json", FRONTEND / "package-lock.json")


def _inputs() -> Iterator[Path]:
    for name in INPUT_FILES:
        yield FRONTEND / name
    yield from PICTURE_INPUTS
    for d in INPUT_DIRS:
        if d.is_dir():
            yield from sorted(p for p in d.rglob("*") if p.is_file())


def _digest(paths: Iterator[Path] | tuple[Path, ...]) -> str:
    h = hashlib.sha256()
    for p in paths:
        if p.exists():
            h.update(str(p.relative_to(REPO_ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _stamp_ok(name: str, digest: str) -> bool:
    stamp = STAMPS / name
    return stamp.exists() and stamp.read_text() == digest


def _write_stamp(name: str, digest: str) -> None:
    STAMPS.mkdir(parents=True, exist_ok=True)
    (STAMPS / name).write_text(digest)


def _run(argv: list[str]) -> None:
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        raise RuntimeError(f"{argv[0]} not found: install Node.js 20.19+ (npm comes with it)")
    done = subprocess.run(argv, cwd=FRONTEND, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise RuntimeError(f"`{' '.join(argv)}` exited {done.returncode}:\n{tail}")


def node_modules_fresh() -> bool:
    return (FRONTEND / "node_modules" / ".bin" / "vite").exists() and _stamp_ok(
        "frontend-npm", _digest(LOCK_FILES)
    )


def dist_fresh() -> bool:
    return (
        node_modules_fresh()
        and (DIST / "index.html").exists()
        and _stamp_ok("frontend-dist", _digest(_inputs()))
    )


def ensure_node_modules() -> None:
    """`npm ci` when node_modules is missing or older than package-lock.json."""
    if not node_modules_fresh():
        _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"])
        _write_stamp("frontend-npm", _digest(LOCK_FILES))


def build() -> None:
    """npm ci if needed, then type-check and bundle into a side dir and swap it in, so
    NGINX never serves a half-written dist."""
    ensure_node_modules()
    # The demo products' pictures, drawn by the project, into public/ (not committed): every
    # Vite build copies them into the bundle, also one run by hand (`npm run build`). NGINX
    # serves them under /images/products/ with cache headers.
    pictures.write_all(PICTURES)
    digest = _digest(_inputs())
    bin_ = FRONTEND / "node_modules" / ".bin"
    _run([str(bin_ / "tsc"), "-b"])
    staging = FRONTEND / "dist.next"
    _run([str(bin_ / "vite"), "build", "--outDir", str(staging), "--emptyOutDir"])
    old = FRONTEND / "dist.old"
    shutil.rmtree(old, ignore_errors=True)
    if DIST.exists():
        DIST.rename(old)
    staging.rename(DIST)
    shutil.rmtree(old, ignore_errors=True)
    _write_stamp("frontend-dist", digest)


def _signature() -> tuple[int, int]:
    """Cheap change detector for the watcher: newest mtime and file count of the inputs."""
    newest, count = 0, 0
    for p in _inputs():
        try:
            newest = max(newest, p.stat().st_mtime_ns)
            count += 1
        except OSError:
            continue
    return newest, count


def _ready_file() -> Path:
    return state_dir() / "frontend" / "watcher.pid"


def healthy() -> bool:
    """dist is there and our watcher says it is running (its pid file names a live pid):
    a dist left from an earlier run alone must not look like a started component."""
    try:
        pid = int(_ready_file().read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return (DIST / "index.html").exists()


def watch(interval: float = 2.0) -> None:
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    ready = _ready_file()
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.write_text(str(os.getpid()))
    print(f"frontend: serving {DIST} through NGINX; rebuilding when sources change", flush=True)
    seen = _signature()
    while not stop:
        time.sleep(interval)
        now = _signature()
        if now == seen:
            continue
        seen = now
        if dist_fresh():
            continue
        t0 = time.monotonic()
        try:
            build()
            print(f"frontend: rebuilt in {time.monotonic() - t0:.1f}s", flush=True)
        except RuntimeError as exc:  # keep the last good dist and say why
            print(f"frontend: build failed, keeping the previous dist\n{exc}", flush=True)
    ready.unlink(missing_ok=True)


def component() -> Component:
    return Component(
        name="frontend",
        command=lambda: [sys.executable, "-m", "stack.frontend", "--watch"],
        health=Custom(healthy, "frontend/dist/index.html + watcher"),
        requires=[Step("npm ci + vite build (when sources changed)", dist_fresh, build)],
        cwd=REPO_ROOT,
        info=lambda: f"{DIST} (served by nginx)",
        start_timeout=10,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watch", action="store_true", help="keep rebuilding on changes")
    args = parser.parse_args()
    if not dist_fresh():
        build()
    if args.watch:
        watch()


if __name__ == "__main__":
    main()
