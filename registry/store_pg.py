"""PostgreSQL store (asyncpg) behind `registry.ports.Store`.

Tables are created idempotently at startup under an advisory lock (two registries starting
at once must not race on CREATE TABLE). Global ids come from a bigserial: an
`INSERT .. ON CONFLICT (fingerprint) DO NOTHING` makes concurrent registration of one schema
yield one id; ids only grow (a lost race burns a sequence value, as in Confluent ids are not
dense). Writers of one subject are serialized by `pg_advisory_xact_lock` on the subject.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from registry.errors import StoreError
from registry.ports import SchemaRow, VersionRow

_DDL_LOCK = 0x5E6157  # arbitrary constant, shared by every registry process
_DDL = """
CREATE TABLE IF NOT EXISTS registry_schemas (
    id          bigserial PRIMARY KEY,
    fingerprint text NOT NULL UNIQUE,
    schema_type text NOT NULL,
    schema_text text NOT NULL,
    refs        jsonb NOT NULL DEFAULT '[]',
    guid        uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS registry_subject_versions (
    subject   text NOT NULL,
    version   integer NOT NULL,
    schema_id bigint NOT NULL REFERENCES registry_schemas (id),
    deleted   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (subject, version)
);
CREATE INDEX IF NOT EXISTS registry_subject_versions_schema_id
    ON registry_subject_versions (schema_id);
CREATE TABLE IF NOT EXISTS registry_settings (
    kind    text NOT NULL,
    subject text NOT NULL,
    value   text NOT NULL,
    PRIMARY KEY (kind, subject)
);
"""


def asyncpg_dsn(url: str) -> str:
    """Accept SQLAlchemy-style URLs (postgresql+asyncpg://) as well as plain ones."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+")[0]))


async def ensure_database(dsn: str) -> None:
    """Create the target database when missing (needs CREATEDB on the role)."""
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        parts = urlsplit(dsn)
        name = parts.path.lstrip("/")
        admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
    else:
        await conn.close()


class PostgresStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(
        cls, url: str, *, schema: str = "public", min_size: int = 2, max_size: int = 10
    ) -> PostgresStore:
        """Open a pool on `url`, tables in PostgreSQL schema `schema` (tests isolate by it)."""
        dsn = asyncpg_dsn(url)
        try:
            await ensure_database(dsn)
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                server_settings={"search_path": schema},
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"Error connecting to the registry database: {exc}") from exc
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK)
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(_DDL)
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_PgTx]:
        async with self._pool.acquire() as conn:
            yield _PgTx(conn)

    @asynccontextmanager
    async def write(self, subject: str | None = None) -> AsyncIterator[_PgTx]:
        async with self._pool.acquire() as conn, conn.transaction():
            key = f"registry:{subject}" if subject is not None else "registry:*"
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)
            yield _PgTx(conn)


def _schema_row(rec: asyncpg.Record | None) -> SchemaRow | None:
    if rec is None:
        return None
    refs = json.loads(rec["refs"])
    return SchemaRow(
        rec["id"],
        rec["schema_type"],
        rec["schema_text"],
        tuple((r["name"], r["subject"], r["version"]) for r in refs),
        str(rec["guid"]),
    )


def _version_row(rec: asyncpg.Record) -> VersionRow:
    return VersionRow(rec["subject"], rec["version"], rec["schema_id"], rec["deleted"])


_SCHEMA_COLS = "id, schema_type, schema_text, refs::text AS refs, guid"


class _PgTx:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get_or_create_schema(
        self,
        fingerprint: str,
        schema_type: str,
        text: str,
        references: Sequence[tuple[str, str, int]],
        wanted_id: int | None = None,
    ) -> int:
        refs = json.dumps([{"name": n, "subject": s, "version": v} for n, s, v in references])
        if wanted_id is None:
            schema_id = await self._conn.fetchval(
                "INSERT INTO registry_schemas (fingerprint, schema_type, schema_text, refs)"
                " VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (fingerprint) DO NOTHING RETURNING id",
                fingerprint,
                schema_type,
                text,
                refs,
            )
        else:
            schema_id = await self._conn.fetchval(
                "INSERT INTO registry_schemas (id, fingerprint, schema_type, schema_text, refs)"
                " VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (fingerprint) DO NOTHING"
                " RETURNING id",
                wanted_id,
                fingerprint,
                schema_type,
                text,
                refs,
            )
            # Keep generated ids above imported ones.
            await self._conn.execute(
                "SELECT setval(pg_get_serial_sequence('registry_schemas', 'id'),"
                " GREATEST((SELECT max(id) FROM registry_schemas),"
                " (SELECT last_value FROM registry_schemas_id_seq)))"
            )
        if schema_id is None:
            schema_id = await self.schema_id_by_fingerprint(fingerprint)
        assert schema_id is not None
        return schema_id

    async def schema_by_id(self, schema_id: int) -> SchemaRow | None:
        return _schema_row(
            await self._conn.fetchrow(
                f"SELECT {_SCHEMA_COLS} FROM registry_schemas WHERE id = $1", schema_id
            )
        )

    async def schema_by_guid(self, guid: str) -> SchemaRow | None:
        return _schema_row(
            await self._conn.fetchrow(
                f"SELECT {_SCHEMA_COLS} FROM registry_schemas WHERE guid::text = $1", guid
            )
        )

    async def schema_id_by_fingerprint(self, fingerprint: str) -> int | None:
        return await self._conn.fetchval(
            "SELECT id FROM registry_schemas WHERE fingerprint = $1", fingerprint
        )

    async def versions(self, subject: str) -> list[VersionRow]:
        rows = await self._conn.fetch(
            "SELECT subject, version, schema_id, deleted FROM registry_subject_versions"
            " WHERE subject = $1 ORDER BY version",
            subject,
        )
        return [_version_row(r) for r in rows]

    async def versions_of_schema(self, schema_id: int) -> list[VersionRow]:
        rows = await self._conn.fetch(
            "SELECT subject, version, schema_id, deleted FROM registry_subject_versions"
            " WHERE schema_id = $1 ORDER BY subject, version",
            schema_id,
        )
        return [_version_row(r) for r in rows]

    async def insert_version(self, subject: str, version: int, schema_id: int) -> None:
        await self._conn.execute(
            "INSERT INTO registry_subject_versions (subject, version, schema_id)"
            " VALUES ($1, $2, $3)",
            subject,
            version,
            schema_id,
        )

    async def soft_delete(self, subject: str, versions: Sequence[int]) -> None:
        await self._conn.execute(
            "UPDATE registry_subject_versions SET deleted = true"
            " WHERE subject = $1 AND version = ANY($2::int[])",
            subject,
            list(versions),
        )

    async def hard_delete(self, subject: str, versions: Sequence[int]) -> None:
        await self._conn.execute(
            "DELETE FROM registry_subject_versions WHERE subject = $1 AND version = ANY($2::int[])",
            subject,
            list(versions),
        )

    async def subjects(self) -> list[tuple[str, bool]]:
        rows = await self._conn.fetch(
            "SELECT subject, bool_or(NOT deleted) AS live FROM registry_subject_versions"
            " GROUP BY subject ORDER BY subject"
        )
        return [(r["subject"], r["live"]) for r in rows]

    async def referenced_by(self, subject: str, version: int) -> list[int]:
        probe = json.dumps([{"subject": subject, "version": version}])
        rows = await self._conn.fetch(
            "SELECT DISTINCT s.id FROM registry_schemas s"
            " JOIN registry_subject_versions v ON v.schema_id = s.id AND NOT v.deleted"
            " WHERE s.refs @> $1::jsonb ORDER BY s.id",
            probe,
        )
        return [r["id"] for r in rows]

    async def get_setting(self, kind: str, subject: str | None) -> str | None:
        return await self._conn.fetchval(
            "SELECT value FROM registry_settings WHERE kind = $1 AND subject = $2",
            kind,
            subject or "",
        )

    async def set_setting(self, kind: str, subject: str | None, value: str | None) -> None:
        if value is None:
            await self._conn.execute(
                "DELETE FROM registry_settings WHERE kind = $1 AND subject = $2",
                kind,
                subject or "",
            )
        else:
            await self._conn.execute(
                "INSERT INTO registry_settings (kind, subject, value) VALUES ($1, $2, $3)"
                " ON CONFLICT (kind, subject) DO UPDATE SET value = EXCLUDED.value",
                kind,
                subject or "",
                value,
            )
