"""FerretDB v1.24.2 (MongoDB wire protocol) built from the Go module proxy, SQLite backend.

Why SQLite and not the PostgreSQL primary: the order store then has no runtime coupling to
the PostgreSQL primary (the reliability suite restarts PostgreSQL and FerretDB separately),
needs no extra database or credentials, and its data is one dir under the state dir.

Build: `go.mod` beside this file pins FerretDB (tool directive + go.sum). The module zip
lacks the generated build/version/version.txt that FerretDB's init() insists on, so we copy
the module source out of the read-only module cache, write that file, and build the copy.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

from stack.model import CACHE_DIR, Component, Custom, Step, port, state_dir
from stack.runner import StackError, run_cmd

VERSION = "v1.24.2"
MODULE = "github.com/FerretDB/FerretDB"
GO_MOD_DIR = Path(__file__).parent
BINARY = CACHE_DIR / "bin" / f"ferretdb-{VERSION}"


def mongo_port() -> int:
    return port("SHOPMESH_FERRETDB_PORT", 27017)


def mongo_url(database: str = "") -> str:
    return f"mongodb://127.0.0.1:{mongo_port()}/{database}"


def _build() -> None:
    if shutil.which("go") is None:
        raise StackError("ferretdb", "go toolchain not found", hint="install Go >= 1.24")
    log = state_dir() / "logs" / "install.log"
    info = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{VERSION}"],
        cwd=GO_MOD_DIR, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if info.returncode != 0:
        raise StackError("ferretdb", f"go mod download failed: {info.stderr.strip()}")
    src = Path(json.loads(info.stdout)["Dir"])
    work = CACHE_DIR / "src" / f"ferretdb-{VERSION}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(src, work)
    for p in [work, *work.rglob("*")]:  # module cache files are read-only
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
    (work / "build" / "version" / "version.txt").write_text(VERSION)
    (work / "build" / "version" / "package.txt").write_text("shopmesh-stack")
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    run_cmd(
        ["go", "build", "-trimpath", "-o", str(BINARY), "./cmd/ferretdb"],
        "ferretdb",
        log,
        cwd=work,
    )
    shutil.rmtree(work, ignore_errors=True)


def _dir() -> Path:
    return state_dir() / "ferretdb"


def _prepare() -> None:
    (_dir() / "sqlite").mkdir(parents=True, exist_ok=True)


def _ping() -> bool:
    """A real wire-protocol round trip: FerretDB accepts TCP before its backend is ready."""
    from pymongo import MongoClient

    client = MongoClient(mongo_url(), serverSelectionTimeoutMS=1000, connectTimeoutMS=1000)
    try:
        return client.admin.command("ping").get("ok") == 1.0
    finally:
        client.close()


def components() -> list[Component]:
    return [
        Component(
            name="ferretdb",
            command=lambda: [
                str(BINARY),
                f"--listen-addr=127.0.0.1:{mongo_port()}",
                "--handler=sqlite",
                f"--sqlite-url=file:{_dir() / 'sqlite'}/",
                f"--state-dir={_dir()}",
                "--telemetry=disable",
                "--debug-addr=-",
                "--log-level=warn",
            ],
            health=Custom(_ping, f"mongo ping on :{mongo_port()}"),
            requires=[Step(f"go build FerretDB {VERSION}", BINARY.exists, _build)],
            prepare=_prepare,
            info=mongo_url,
        )
    ]
