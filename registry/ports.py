"""The store port the registry use cases need, and the rows it returns.

Imports only the stdlib. Adapters: `store_pg.PostgresStore` (production, tests) and
`store_memory.MemoryStore` (CI's throwaway registry for `check-against-git`, unit tests).

Writes run in `store.write(subject)`: one transaction that also serializes writers of the
same subject (so version numbers and idempotent re-registration are race free). Schema ids
come from `get_or_create_schema`, which must be atomic on the fingerprint (two subjects
registering the same schema at once get one id).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SchemaRow:
    id: int
    schema_type: str
    text: str
    references: tuple[tuple[str, str, int], ...]  # (name, subject, version)
    guid: str


@dataclass(frozen=True)
class VersionRow:
    subject: str
    version: int
    schema_id: int
    deleted: bool


class StoreTx(Protocol):
    async def get_or_create_schema(
        self,
        fingerprint: str,
        schema_type: str,
        text: str,
        references: Sequence[tuple[str, str, int]],
        wanted_id: int | None = None,
    ) -> int: ...

    async def schema_by_id(self, schema_id: int) -> SchemaRow | None: ...

    async def schema_by_guid(self, guid: str) -> SchemaRow | None: ...

    async def schema_id_by_fingerprint(self, fingerprint: str) -> int | None: ...

    async def versions(self, subject: str) -> list[VersionRow]:
        """All versions of `subject`, soft-deleted included, ascending."""
        ...

    async def versions_of_schema(self, schema_id: int) -> list[VersionRow]: ...

    async def insert_version(self, subject: str, version: int, schema_id: int) -> None: ...

    async def soft_delete(self, subject: str, versions: Sequence[int]) -> None: ...

    async def hard_delete(self, subject: str, versions: Sequence[int]) -> None: ...

    async def subjects(self) -> list[tuple[str, bool]]:
        """(subject, has a live version) for every subject with any version row."""
        ...

    async def referenced_by(self, subject: str, version: int) -> list[int]: ...

    async def get_setting(self, kind: str, subject: str | None) -> str | None:
        """kind is 'compatibility' or 'mode'; subject None is the global setting."""
        ...

    async def set_setting(self, kind: str, subject: str | None, value: str | None) -> None:
        """Store `value`, or delete the setting when value is None."""
        ...


class Store(Protocol):
    def read(self) -> AbstractAsyncContextManager[StoreTx]: ...

    def write(self, subject: str | None = None) -> AbstractAsyncContextManager[StoreTx]: ...

    async def close(self) -> None: ...
