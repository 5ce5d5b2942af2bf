"""Deleting subjects and versions (soft first, then permanent, as Confluent's
DELETE /subjects/... does), and the version argument every use case parses. A base class of
`registry.service.Registry`, which holds the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.errors import (
    InvalidVersion,
    ReferenceExists,
    SubjectNotFound,
    SubjectNotSoftDeleted,
    SubjectSoftDeleted,
    VersionNotFound,
    VersionNotSoftDeleted,
    VersionSoftDeleted,
)
from registry.ports import Store, StoreTx

MAX_VERSION = 2**31 - 1


def parse_version(raw: str | int) -> int | None:
    """`latest`/-1 -> None, else a version in [1, 2^31-1] (42202 otherwise)."""
    if isinstance(raw, str) and raw.lower() == "latest":
        return None
    try:
        version = int(raw)
    except (TypeError, ValueError):
        raise InvalidVersion(str(raw)) from None
    if version == -1:
        return None
    if not 1 <= version <= MAX_VERSION:
        raise InvalidVersion(str(raw))
    return version


class RegistryDeletes:
    """The delete half of Registry (`self.store` is the Registry's; `_require_writable` is
    RegistrySettings')."""

    store: Store

    if TYPE_CHECKING:  # RegistrySettings', the other base of Registry

        async def _require_writable(self, tx: StoreTx, subject: str | None) -> str: ...

    async def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        async with self.store.write(subject) as tx:
            await self._require_writable(tx, subject)
            rows = await tx.versions(subject)
            if not rows:
                raise SubjectNotFound(subject)
            live = [r.version for r in rows if not r.deleted]
            for version in live:
                if await tx.referenced_by(subject, version):
                    raise ReferenceExists(
                        f"One or more references exist to the schema {{subject={subject},"
                        f" version={version}}}"
                    )
            if permanent:
                if live:
                    raise SubjectNotSoftDeleted(subject)
                versions = [r.version for r in rows]
                await tx.hard_delete(subject, versions)
                await tx.set_setting("compatibility", subject, None)
                await tx.set_setting("mode", subject, None)
                return versions
            if not live:
                raise SubjectSoftDeleted(subject)
            await tx.soft_delete(subject, live)
            return live

    async def delete_version(self, subject: str, raw: str | int, *, permanent: bool = False) -> int:
        async with self.store.write(subject) as tx:
            await self._require_writable(tx, subject)
            wanted = parse_version(raw)
            rows = await tx.versions(subject)
            if not rows:
                raise SubjectNotFound(subject)
            if wanted is None:
                pool = [r for r in rows if permanent or not r.deleted]
                if not pool:
                    raise SubjectNotFound(subject)
                row = pool[-1]
            else:
                row = next((r for r in rows if r.version == wanted), None)
                if row is None:
                    raise VersionNotFound(subject, wanted)
            if await tx.referenced_by(subject, row.version):
                raise ReferenceExists(
                    f"One or more references exist to the schema {{subject={subject},"
                    f" version={row.version}}}"
                )
            if permanent:
                if not row.deleted:
                    raise VersionNotSoftDeleted(subject, row.version)
                await tx.hard_delete(subject, [row.version])
            else:
                if row.deleted:
                    raise VersionSoftDeleted(subject, row.version)
                await tx.soft_delete(subject, [row.version])
            return row.version
