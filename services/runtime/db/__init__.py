"""PostgreSQL for the services: read/write router, unit of work, raw hot-path reads and a
change listener (SQLAlchemy 2 async Core + asyncpg).

`Database` owns two AsyncEngines: the primary (every write, and reads that cannot be served
by the replica) and the streaming replica (reads), plus a small pool of raw asyncpg
connections for each. A `UnitOfWork` is made per request:

    uow = db.unit_of_work()
    async with uow.write() as conn:        # primary transaction: commit on clean exit,
        await conn.execute(...)            # rollback on exception; keeps the commit LSN
    async with uow.read() as conn:         # replica if it has replayed uow.last_lsn,
        await conn.execute(...)            # else the primary (counted + logged)
    rows, lsn = await uow.fetch("SELECT ... WHERE id = $1", pid)   # one statement, raw

Read-your-writes. `read(after=lsn)` waits (bounded, `replica_wait_ms`) until the replica's
pg_last_wal_replay_lsn() >= lsn, else reads the primary. The LSN it waits for is the max of
`after`, this unit of work's own last commit, and the caller's `x-shop-lsn` request
metadata (see services.runtime.context); `need_lsn()` computes it. The server returns the
newest commit LSN of a call in the `x-shop-lsn` trailer; a client that echoes it on its
next call (to this service) reads its own writes even when that read lands on the replica.

Cheap reads. `read(single_statement=True)` (one SELECT, e.g. a category count) runs on the
replica in autocommit: one round trip instead of BEGIN READ ONLY + query + COMMIT. Replica
connections are not pinged at checkout (the ping is BEGIN + ";" + ROLLBACK, three round
trips): a connection the server closed is dropped for free at checkout, one idle longer than
`ping_idle_s` is pinged, and a single-statement read that still hits a lost connection is
re-run once on the primary. `REPLICA_PRE_PING=true` / `READ_SNAPSHOT=always` ping every
checkout and wrap every read in a transaction instead (bench/hot_rpc.py measures both side
by side).

Hot reads. `fetch(query, *args)` routes like a single-statement read but runs on a raw
asyncpg connection (rawpool.py): the statement is prepared once per connection, and there
is no SQLAlchemy per-call work, no transaction and no reset round trip on release (the
primary's read connections are `default_transaction_read_only`). It also returns an LSN the
rows are known to include, which a cache (services/product/cache.py) needs to answer a
caller's `x-shop-lsn` without asking the database. `RAW_READS=false` runs the same
statements through SQLAlchemy Core (the A/B in bench/README.md, catalog_read).

Changes. `ChangeListener` (listen.py) LISTENs on a channel of the primary for caches that
must drop what other processes wrote; see its docstring for the LSN fence it reports.

Fallback. Replica down (health check or connect error) or lagging more than
`replica_max_lag_bytes` -> reads go to the primary; `db_reads_total{target,reason}` says
where every read went and why, and state changes are logged.
"""

from services.runtime.db.config import DatabaseConfig
from services.runtime.db.listen import ChangeListener, ChangeSink
from services.runtime.db.router import Database, HealthCheckFn, UnitOfWork

__all__ = [
    "ChangeListener",
    "ChangeSink",
    "Database",
    "DatabaseConfig",
    "HealthCheckFn",
    "UnitOfWork",
]
