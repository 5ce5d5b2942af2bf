"""Avro schema parsing, validation and the two text forms the registry stores.

- *canonical*: the submitted JSON re-serialized compactly with sorted keys. Key order and
  whitespace never change an Avro schema's meaning, so this dedupes cosmetic differences
  while keeping doc, defaults, aliases and custom properties (which matter for
  compatibility). This plays the role of Confluent's `canonicalString()`.
- *normalized* (`?normalize=true`): the avro library's `to_json()` of the parsed schema
  (full names for references, explicit namespaces), then compacted the same way, so
  `"E"` and `"ns.E"` spellings of one schema dedupe too.

The fingerprint (sha256 over type, text and references) is the dedupe key behind the
global schema id. Parsing uses the Apache `avro` library; references are pre-parsed into
the same `Names` so a schema can use named types registered under other subjects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import avro.errors
import avro.schema
from avro.name import Names

from registry.errors import InvalidSchema

SUPPORTED_TYPES = ("AVRO",)


@dataclass(frozen=True)
class Reference:
    """A named type imported from `subject`/`version` (Confluent's `references` entry)."""

    name: str
    subject: str
    version: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "subject": self.subject, "version": self.version}


@dataclass(frozen=True)
class ParsedSchema:
    text: str
    fingerprint: str
    schema: avro.schema.Schema
    references: tuple[Reference, ...] = ()


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def fingerprint(schema_type: str, text: str, references: Sequence[Reference]) -> str:
    payload = _compact([schema_type, text, [r.to_json() for r in references]])
    return hashlib.sha256(payload.encode()).hexdigest()


def parse_references(raw: object) -> tuple[Reference, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidSchema("references must be a list")
    refs = []
    for item in raw:
        if not isinstance(item, dict):
            raise InvalidSchema("each reference must be an object")
        name, subject, version = item.get("name"), item.get("subject"), item.get("version")
        if not isinstance(name, str) or not isinstance(subject, str):
            raise InvalidSchema("reference name and subject must be strings")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise InvalidSchema(f"reference version must be a positive integer, got {version!r}")
        refs.append(Reference(name, subject, version))
    return tuple(refs)


def parse(
    text: str,
    *,
    references: Sequence[Reference] = (),
    referenced_texts: Sequence[str] = (),
    normalize: bool = False,
    schema_type: str = "AVRO",
) -> ParsedSchema:
    """Parse and validate `text`; `referenced_texts` are the resolved references, in order.

    Raises InvalidSchema (42201) with the parser's message.
    """
    if schema_type not in SUPPORTED_TYPES:
        raise InvalidSchema(f"Invalid schema type {schema_type}; supported: AVRO")
    if not isinstance(text, str) or not text.strip():
        raise InvalidSchema("Empty schema")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSchema(f"Invalid schema {text!r}: {exc}") from exc
    names = Names()
    try:
        for ref_text in referenced_texts:
            avro.schema.make_avsc_object(json.loads(ref_text), names)
        schema = avro.schema.make_avsc_object(data, names)
        _check_defaults(schema)
    except (avro.errors.AvroException, ValueError, TypeError, KeyError) as exc:
        raise InvalidSchema(f"Invalid schema {text}, details: {exc}") from exc
    out = _compact(schema.to_json(Names()) if normalize else data)
    return ParsedSchema(out, fingerprint(schema_type, out, references), schema, tuple(references))


def _check_defaults(schema: avro.schema.Schema, seen: set[int] | None = None) -> None:
    """Reject field defaults that do not match the field type (avro's parser accepts them)."""
    seen = set() if seen is None else seen
    if id(schema) in seen:
        return
    seen.add(id(schema))
    if isinstance(schema, avro.schema.RecordSchema):
        for field in schema.fields:
            if field.has_default and not _default_ok(field.type, field.default):
                raise InvalidSchema(
                    f"Invalid default for field {field.name}: {field.default!r} not a {field.type}"
                )
            _check_defaults(field.type, seen)
    elif isinstance(schema, avro.schema.UnionSchema):
        for branch in schema.schemas:
            _check_defaults(branch, seen)
    elif isinstance(schema, avro.schema.ArraySchema):
        _check_defaults(schema.items, seen)
    elif isinstance(schema, avro.schema.MapSchema):
        _check_defaults(schema.values, seen)


def _default_ok(schema: avro.schema.Schema, value: Any) -> bool:
    """Avro JSON-encoding rules for defaults; a union's default matches its first branch."""
    kind = schema.type
    if kind == "union":
        return _default_ok(schema.schemas[0], value)
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("int", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "double"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind in ("string", "bytes", "fixed"):
        return isinstance(value, str)
    if kind == "enum":
        return isinstance(value, str) and value in schema.symbols
    if kind == "array":
        return isinstance(value, list) and all(_default_ok(schema.items, v) for v in value)
    if kind == "map":
        return isinstance(value, dict) and all(
            _default_ok(schema.values, v) for v in value.values()
        )
    if kind in ("record", "error"):
        if not isinstance(value, dict):
            return False
        return all(
            _default_ok(f.type, value[f.name]) if f.name in value else f.has_default
            for f in schema.fields
        )
    return True
