"""In-memory store behind the same port as PostgreSQL.

Used by `python -m registry check-against-git` (a throwaway registry in CI) and by unit
tests. One asyncio lock serializes writes; there is no rollback, so the service performs all
checks before its first mutation in a write.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from registry.ports import SchemaRow, VersionRow


class MemoryStore:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._schemas: dict[int, SchemaRow] = {}
        self._by_fp: dict[str, int] = {}
        self._versions: dict[tuple[str, int], VersionRow] = {}
        self._settings: dict[tuple[str, str], str] = {}

    @asynccontextmanager
    async def read(self) -> AsyncIterator[MemoryStore]:
        yield self

    @asynccontextmanager
    async def write(self, subject: str | None = None) -> AsyncIterator[MemoryStore]:
        async with self._lock:
            yield self

    async def close(self) -> None:
        return None

    async def get_or_create_schema(
        self,
        fingerprint: str,
        schema_type: str,
        text: str,
        references: Sequence[tuple[str, str, int]],
        wanted_id: int | None = None,
    ) -> int:
        if fingerprint in self._by_fp:
            return self._by_fp[fingerprint]
        schema_id = wanted_id if wanted_id is not None else next(self._ids)
        if wanted_id is not None:
            # Keep generated ids above imported ones, as a sequence bump would.
            self._ids = itertools.count(max(wanted_id, max(self._schemas, default=0)) + 1)
        self._schemas[schema_id] = SchemaRow(
            schema_id, schema_type, text, tuple(references), str(uuid.uuid4())
        )
        self._by_fp[fingerprint] = schema_id
        return schema_id

    async def schema_by_id(self, schema_id: int) -> SchemaRow | None:
        return self._schemas.get(schema_id)

    async def schema_by_guid(self, guid: str) -> SchemaRow | None:
        return next((s for s in self._schemas.values() if s.guid == guid), None)

    async def schema_id_by_fingerprint(self, fingerprint: str) -> int | None:
        return self._by_fp.get(fingerprint)

    async def versions(self, subject: str) -> list[VersionRow]:
        return sorted(
            (v for (s, _), v in self._versions.items() if s == subject), key=lambda v: v.version
        )

    async def versions_of_schema(self, schema_id: int) -> list[VersionRow]:
        rows = [v for v in self._versions.values() if v.schema_id == schema_id]
        return sorted(rows, key=lambda v: (v.subject, v.version))

    async def insert_version(self, subject: str, version: int, schema_id: int) -> None:
        self._versions[(subject, version)] = VersionRow(subject, version, schema_id, False)

    async def soft_delete(self, subject: str, versions: Sequence[int]) -> None:
        for v in versions:
            row = self._versions[(subject, v)]
            self._versions[(subject, v)] = VersionRow(subject, v, row.schema_id, True)

    async def hard_delete(self, subject: str, versions: Sequence[int]) -> None:
        for v in versions:
            self._versions.pop((subject, v), None)

    async def subjects(self) -> list[tuple[str, bool]]:
        live: dict[str, bool] = {}
        for (subject, _), row in self._versions.items():
            live[subject] = live.get(subject, False) or not row.deleted
        return sorted(live.items())

    async def referenced_by(self, subject: str, version: int) -> list[int]:
        live = {v.schema_id for v in self._versions.values() if not v.deleted}
        return sorted(
            s.id
            for s in self._schemas.values()
            if s.id in live and any(r[1] == subject and r[2] == version for r in s.references)
        )

    async def get_setting(self, kind: str, subject: str | None) -> str | None:
        return self._settings.get((kind, subject or ""))

    async def set_setting(self, kind: str, subject: str | None, value: str | None) -> None:
        if value is None:
            self._settings.pop((kind, subject or ""), None)
        else:
            self._settings[(kind, subject or "")] = value
