"""Registry use cases (Confluent Schema Registry semantics) over the `Store` port.

Imports only the stdlib and our own modules (avro parsing lives in `avro_schema`). Every
method returns plain JSON-ready values; errors are `registry.errors` with Confluent codes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from registry import avro_schema
from registry.avro_schema import ParsedSchema, Reference
from registry.compatibility import Level, PreviousSchema, check
from registry.deletes import RegistryDeletes, parse_version
from registry.errors import (
    IncompatibleSchema,
    InvalidSchema,
    OperationNotPermitted,
    SchemaNotFound,
    SubjectNotFound,
    VersionNotFound,
)
from registry.ports import SchemaRow, Store, StoreTx, VersionRow
from registry.settings import RegistrySettings


@functools.lru_cache(maxsize=512)
def _parse_cached(
    text: str, refs: tuple[Reference, ...], ref_texts: tuple[str, ...], normalize: bool, kind: str
) -> ParsedSchema:
    # Parsing is pure and the hot path of idempotent re-registration; avro parsing dominates it.
    return avro_schema.parse(
        text, references=refs, referenced_texts=ref_texts, normalize=normalize, schema_type=kind
    )


def schema_payload(row: SchemaRow) -> dict[str, Any]:
    """`schema`, plus `schemaType` (omitted for AVRO, like Confluent) and non-empty `references`."""
    out: dict[str, Any] = {"schema": row.text}
    if row.schema_type != "AVRO":
        out["schemaType"] = row.schema_type
    if row.references:
        out["references"] = [{"name": n, "subject": s, "version": v} for n, s, v in row.references]
    return out


class Registry(RegistrySettings, RegistryDeletes):
    """The use cases; one instance per process, sharing the store's connection pool."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- parsing -------------------------------------------------------------------
    async def _parse(self, tx: StoreTx, body: dict[str, Any], normalize: bool) -> ParsedSchema:
        schema_type = body.get("schemaType") or "AVRO"
        if not isinstance(schema_type, str):
            raise InvalidSchema("schemaType must be a string")
        text = body.get("schema")
        if not isinstance(text, str):
            raise InvalidSchema("Empty schema" if text is None else "schema must be a string")
        refs = avro_schema.parse_references(body.get("references"))
        ref_texts = tuple([await self._reference_text(tx, r, set()) for r in refs])
        return _parse_cached(
            text, refs, tuple(t for ts in ref_texts for t in ts), normalize, schema_type.upper()
        )

    async def _reference_text(
        self, tx: StoreTx, ref: Reference, seen: set[tuple[str, int]]
    ) -> tuple[str, ...]:
        """Texts of `ref` and, first, of its own references (dependency order)."""
        if (ref.subject, ref.version) in seen:
            return ()
        seen.add((ref.subject, ref.version))
        row = next((v for v in await tx.versions(ref.subject) if v.version == ref.version), None)
        if row is None:
            raise InvalidSchema(
                f"Invalid schema: reference {ref.name} -> {ref.subject}/{ref.version} not found"
            )
        schema = await tx.schema_by_id(row.schema_id)
        assert schema is not None
        texts: list[str] = []
        for name, subject, version in schema.references:
            texts += await self._reference_text(tx, Reference(name, subject, version), seen)
        return (*texts, schema.text)

    async def _parsed_row(self, tx: StoreTx, row: SchemaRow) -> ParsedSchema:
        refs = tuple(Reference(*r) for r in row.references)
        ref_texts: list[str] = []
        for ref in refs:
            ref_texts += await self._reference_text(tx, ref, set())
        return _parse_cached(row.text, refs, tuple(ref_texts), False, row.schema_type)

    # ---- subjects and versions -----------------------------------------------------
    async def register(
        self, subject: str, body: dict[str, Any], *, normalize: bool = False
    ) -> dict[str, Any]:
        # Fast path without the subject lock: producers re-register the same schema on every
        # start, and an already live (subject, schema) pair never changes its answer.
        async with self.store.read() as tx:
            mode = await self._require_writable(tx, subject)
            parsed = await self._parse(tx, body, normalize)
            existing_id = await tx.schema_id_by_fingerprint(parsed.fingerprint)
            if existing_id is not None and mode != "IMPORT":
                for row in await tx.versions(subject):
                    if row.schema_id == existing_id and not row.deleted:
                        return {"id": existing_id, "version": row.version}
        async with self.store.write(subject) as tx:
            mode = await self._require_writable(tx, subject)
            parsed = await self._parse(tx, body, normalize)
            wanted_id, wanted_version = body.get("id"), body.get("version")
            if mode != "IMPORT" and wanted_id not in (None, -1, 0):
                raise OperationNotPermitted(
                    f"Subject {subject} is not in import mode; a schema id cannot be specified"
                )
            versions = await tx.versions(subject)
            existing_id = await tx.schema_id_by_fingerprint(parsed.fingerprint)
            if existing_id is not None:
                for row in versions:
                    if row.schema_id == existing_id and not row.deleted:
                        return {"id": existing_id, "version": row.version}
            if mode != "IMPORT":
                live = [v for v in versions if not v.deleted]
                messages = check(
                    await self._level(tx, subject), parsed.schema, await self._previous(tx, live)
                )
                if messages:
                    raise IncompatibleSchema(
                        "Schema being registered is incompatible with an earlier schema for"
                        f' subject "{subject}", details: [{", ".join(messages)}]',
                        messages,
                    )
            schema_id = await tx.get_or_create_schema(
                parsed.fingerprint,
                body.get("schemaType") or "AVRO",
                parsed.text,
                [(r.name, r.subject, r.version) for r in parsed.references],
                wanted_id
                if mode == "IMPORT" and isinstance(wanted_id, int) and wanted_id > 0
                else None,
            )
            if (
                mode == "IMPORT"
                and isinstance(wanted_id, int)
                and wanted_id > 0
                and (schema_id != wanted_id)
            ):
                raise OperationNotPermitted(
                    f"Overwrite new schema with id {wanted_id} is not permitted: the schema is"
                    f" already registered with id {schema_id}"
                )
            version = max((v.version for v in versions), default=0) + 1
            if isinstance(wanted_version, int) and wanted_version > 0 and mode == "IMPORT":
                if any(v.version == wanted_version for v in versions):
                    raise OperationNotPermitted(f"Version {wanted_version} already exists")
                version = wanted_version
            await tx.insert_version(subject, version, schema_id)
            return {"id": schema_id, "version": version}

    async def _previous(self, tx: StoreTx, live: Sequence[VersionRow]) -> list[PreviousSchema]:
        out = []
        for row in live:
            schema = await tx.schema_by_id(row.schema_id)
            assert schema is not None
            out.append(
                PreviousSchema(
                    row.version, (await self._parsed_row(tx, schema)).schema, schema.text
                )
            )
        return out

    async def lookup(
        self, subject: str, body: dict[str, Any], *, normalize: bool = False, deleted: bool = False
    ) -> dict[str, Any]:
        async with self.store.read() as tx:
            versions = [v for v in await tx.versions(subject) if deleted or not v.deleted]
            if not versions:
                raise SubjectNotFound(subject)
            candidates = [await self._parse(tx, body, normalize)]
            if not normalize:
                # A schema registered with ?normalize=true is still found by a plain lookup.
                candidates.append(await self._parse(tx, body, True))
            for parsed in candidates:
                schema_id = await tx.schema_id_by_fingerprint(parsed.fingerprint)
                for row in reversed(versions):
                    if row.schema_id == schema_id:
                        schema = await tx.schema_by_id(row.schema_id)
                        assert schema is not None
                        return {
                            "subject": subject,
                            "version": row.version,
                            "id": row.schema_id,
                            **schema_payload(schema),
                        }
            raise SchemaNotFound("Schema not found")

    async def subjects(
        self, *, deleted: bool = False, deleted_only: bool = False, prefix: str = ""
    ) -> list[str]:
        async with self.store.read() as tx:
            rows = await tx.subjects()
        if deleted_only:
            return [s for s, live in rows if not live and s.startswith(prefix)]
        return [s for s, live in rows if (live or deleted) and s.startswith(prefix)]

    async def versions(
        self, subject: str, *, deleted: bool = False, deleted_only: bool = False
    ) -> list[int]:
        async with self.store.read() as tx:
            rows = await tx.versions(subject)
        if not rows:
            raise SubjectNotFound(subject)
        if deleted_only:
            return [r.version for r in rows if r.deleted]
        picked = [r.version for r in rows if deleted or not r.deleted]
        if not picked and not deleted:
            raise SubjectNotFound(subject)
        return picked

    async def _version_row(
        self, tx: StoreTx, subject: str, raw: str | int, deleted: bool = False
    ) -> VersionRow:
        wanted = parse_version(raw)
        rows = await tx.versions(subject)
        live = [r for r in rows if deleted or not r.deleted]
        if not live:
            raise SubjectNotFound(subject)
        if wanted is None:
            return live[-1]
        for row in live:
            if row.version == wanted:
                return row
        raise VersionNotFound(subject, wanted)

    async def version(
        self, subject: str, raw: str | int, *, deleted: bool = False
    ) -> dict[str, Any]:
        async with self.store.read() as tx:
            row = await self._version_row(tx, subject, raw, deleted)
            schema = await tx.schema_by_id(row.schema_id)
        assert schema is not None
        return {
            "subject": subject,
            "version": row.version,
            "id": row.schema_id,
            **schema_payload(schema),
        }

    async def referenced_by(self, subject: str, raw: str | int) -> list[int]:
        async with self.store.read() as tx:
            row = await self._version_row(tx, subject, raw)
            return await tx.referenced_by(subject, row.version)

    # ---- schemas by id -------------------------------------------------------------
    async def schema_by_id(self, schema_id: int, subject: str | None = None) -> dict[str, Any]:
        async with self.store.read() as tx:
            row = await tx.schema_by_id(schema_id)
        if row is None:
            raise SchemaNotFound(f"Schema {schema_id} not found")
        return schema_payload(row)

    async def schema_by_guid(self, guid: str) -> dict[str, Any]:
        async with self.store.read() as tx:
            row = await tx.schema_by_guid(guid)
        if row is None:
            raise SchemaNotFound(f"Schema {guid} not found")
        return {"id": row.id, **schema_payload(row)}

    async def schema_versions(
        self, schema_id: int, *, deleted: bool = False, subject: str | None = None
    ) -> list[dict[str, Any]]:
        async with self.store.read() as tx:
            if await tx.schema_by_id(schema_id) is None:
                raise SchemaNotFound(f"Schema {schema_id} not found")
            rows = await tx.versions_of_schema(schema_id)
        return [
            {"subject": r.subject, "version": r.version}
            for r in rows
            if (deleted or not r.deleted) and (subject is None or r.subject == subject)
        ]

    async def schema_subjects(
        self, schema_id: int, *, deleted: bool = False, subject: str | None = None
    ) -> list[str]:
        versions = await self.schema_versions(schema_id, deleted=deleted, subject=subject)
        return sorted({v["subject"] for v in versions})

    # ---- compatibility -------------------------------------------------------------
    async def test_compatibility(
        self,
        subject: str,
        raw_version: str | int | None,
        body: dict[str, Any],
        *,
        normalize: bool = False,
        verbose: bool = False,
    ) -> dict[str, Any]:
        async with self.store.read() as tx:
            parsed = await self._parse(tx, body, normalize)
            level = await self._level(tx, subject)
            live = [v for v in await tx.versions(subject) if not v.deleted]
            wanted = None if raw_version is None else parse_version(raw_version)
            if raw_version is None:
                targets = live if level.transitive else live[-1:]
            elif wanted is None:  # "latest": nothing live yet is compatible with anything
                targets = live[-1:]
            else:
                # Soft-deleted versions are never checked against; a number that names no
                # live version is "version not found" (40402), whether or not the subject
                # has others, as in Confluent's CompatibilityResource.
                targets = [v for v in live if v.version == wanted]
                if not targets:
                    raise VersionNotFound(subject, wanted)
            previous = await self._previous(tx, targets)
        # A single chosen version is checked as if it were the only one (Confluent).
        effective = level if raw_version is None else Level(level.value.replace("_TRANSITIVE", ""))
        messages = check(effective, parsed.schema, previous)
        out: dict[str, Any] = {"is_compatible": not messages}
        if verbose:
            out["messages"] = messages
        return out
