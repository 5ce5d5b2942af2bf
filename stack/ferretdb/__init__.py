"""FerretDB (MongoDB wire protocol) built from the Go module proxy, on its PostgreSQL
backend: a `ferretdb` database on the stack's primary. Its version is the manifest's
(schemas/topology.yaml, infrastructure.mongo), which go.mod beside this file pins.

Why PostgreSQL and not SQLite: FerretDB's default and most complete v1 backend. It pushes
equality filters on any field down to SQL and turns createIndexes into real indexes (the
SQLite backend pushes down only a lone `_id` filter, so a lookup by idempotency key scanned
the collection), and it stays answering through the reliability suite's faults: on SQLite,
FerretDB stopped answering reads after a kill -9 of a client mid-write (3 of 3 runs).
The price is a runtime dependency on the primary, which the order store's durability
shares with every other store here anyway.

Build: `go.mod` beside this file pins FerretDB (tool directive + go.sum). The module zip
lacks the generated build/version/version.txt that FerretDB's init() insists on, so we copy
the module source out of the read-only module cache, write that file, and build the copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

from stack import postgres
from stack.model import CACHE_DIR, Component, Custom, Step, port, state_dir
from stack.runner import StackError, run_cmd
from topology import topology

VERSION = topology().infra("mongo").version  # go.mod pins the same (tests/unit/stack)
MODULE = "github.com/FerretDB/FerretDB"
GO_MOD_DIR = Path(__file__).parent
BINARY = CACHE_DIR / "bin" / f"ferretdb-{VERSION}"
DATABASE = "ferretdb"  # on the PostgreSQL primary; FerretDB makes a schema per Mongo database
POOL_MAX_CONNS = 100  # see postgresql_url()


def mongo_port() -> int:
    return port("SHOPMESH_FERRETDB_PORT", topology().infra("mongo").port("mongo"))


def debug_port() -> int:
    return port("SHOPMESH_FERRETDB_DEBUG_PORT", topology().infra("mongo").port("debug"))


def mongo_url(database: str = "") -> str:
    return f"mongodb://127.0.0.1:{mongo_port()}/{database}"


def postgresql_url() -> str:
    """The backend DSN. pool_max_conns: FerretDB v1 holds two backend connections per
    update/delete/findAndModify and waits for them without a deadline, so its pool must
    exceed twice the commands clients keep in flight (the order service: 2 x 20) or it
    stops answering for good (seen: FerretDB's default of 50 vs a 200-statement bulk)."""
    return f"{postgres.dsn(DATABASE, driver='postgres')}?pool_max_conns={POOL_MAX_CONNS}"


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
    _dir().mkdir(parents=True, exist_ok=True)


def _ping() -> bool:
    """A real wire-protocol round trip: FerretDB accepts TCP before its backend is ready."""
    from pymongo import MongoClient

    client = MongoClient(mongo_url(), serverSelectionTimeoutMS=1000, connectTimeoutMS=1000)
    try:
        return client.admin.command("ping").get("ok") == 1.0
    finally:
        client.close()


# ---------------------------------------------------------------- equality indexes
#
# FerretDB v1 pushes a Mongo equality filter down as `_jsonb->'f' @> value` (containment, for
# Mongo's array semantics), and makes createIndexes a btree on `(_jsonb->'f')`, which `@>`
# cannot use: every find, update and delete by `_id` read the whole table (10 ms per lookup
# at 3,500 orders, linear in the collection; a placed order does about three). A GIN index
# (jsonb_path_ops) on the same expression serves `@>`. twin_indexes() adds one beside every
# index FerretDB made, on its leading field, so the services' createIndexes calls stay the
# one declaration of what is indexed (on a real MongoDB, as in compose and Kubernetes, those
# indexes serve equality themselves and nothing here runs).

METADATA_TABLE = "_ferretdb_database_metadata"  # one per FerretDB database (= schema)
_SEP = "\x1f"  # between the columns of a row (psql -A would use "|", a legal field char)
_LEADING_FIELD = re.compile(r"^\(_jsonb -> '((?:[^']|'')*)'::text\)$")

_LIST_SQL = f"""
SELECT concat_ws(E'\\x1f', n.nspname, c.relname, pg_get_indexdef(i.indexrelid, 1, true))
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
WHERE am.amname = 'btree' AND c.relname <> '{METADATA_TABLE}'
  AND EXISTS (SELECT 1 FROM pg_class m
              WHERE m.relnamespace = n.oid AND m.relname = '{METADATA_TABLE}')
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def twin_index_sql(schema: str, table: str, field: str) -> str:
    """The GIN twin of a FerretDB index whose leading field is `field` (idempotent)."""
    digest = hashlib.sha1(f"{table}.{field}".encode()).hexdigest()[:8]
    literal = field.replace("'", "''")
    return (
        f"CREATE INDEX IF NOT EXISTS {_ident(f'{table[:40]}_{digest}_eq')} "
        f"ON {_ident(schema)}.{_ident(table)} USING gin ((_jsonb -> '{literal}') jsonb_path_ops)"
    )


def twin_indexes(schemas: Sequence[str] | None = None) -> list[str]:
    """Add the missing GIN twins in the FerretDB databases `schemas` (default: all of them);
    returns the statements run. Dotted-path indexes (`#>`) are left alone: none here."""
    wanted: dict[tuple[str, str, str], None] = {}
    for line in postgres.psql(_LIST_SQL, DATABASE).splitlines():
        schema, table, expr = line.split(_SEP)
        m = _LEADING_FIELD.match(expr)
        if m and (schemas is None or schema in schemas):
            wanted[(schema, table, m.group(1).replace("''", "'"))] = None
    statements = [twin_index_sql(*key) for key in wanted]
    if statements:
        postgres.psql(";\n".join(statements), DATABASE)
    return statements


def twin_indexes_after_start() -> None:
    """The order service's post-start step: it created its collections and indexes while
    starting, so their twins can be made now. Only its own database: tests make and drop
    private ones meanwhile, and a table dropped between listing and indexing would fail it."""
    twin_indexes([os.environ.get("ORDER_MONGO_DATABASE", "order")])


def components() -> list[Component]:
    return [
        Component(
            name="ferretdb",
            command=lambda: [
                str(BINARY),
                f"--listen-addr=127.0.0.1:{mongo_port()}",
                "--handler=postgresql",
                f"--postgresql-url={postgresql_url()}",
                f"--state-dir={_dir()}",
                "--telemetry=disable",
                # Metrics (/debug/metrics: cursors, pool, commands) and pprof for diagnosis.
                f"--debug-addr=127.0.0.1:{debug_port()}",
                "--log-level=warn",
            ],
            health=Custom(_ping, f"mongo ping on :{mongo_port()}"),
            requires=[Step(f"go build FerretDB {VERSION}", BINARY.exists, _build)],
            prepare=_prepare,
            depends_on=["postgres-primary"],
            info=mongo_url,
        )
    ]
