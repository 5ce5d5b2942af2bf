"""Avro schema compatibility per Confluent level, on top of Apache Avro's own checker.

The reader/writer rules (Avro spec "Schema Resolution") are not re-implemented here: the
Apache `avro` Python SDK ships `avro.compatibility.ReaderWriterCompatibilityChecker`, a port
of Java's `SchemaCompatibility` (what Confluent's registry itself uses). fastavro has no
checker. That one covers: record fields (a reader field missing from the writer needs a
default; writer-only fields are skipped), field aliases, named-type names and aliases,
promotions int->long->float->double and string<->bytes, enum symbols (a reader enum
default absorbs unknown writer symbols), unions (every writer branch must resolve; a
non-union writer must match some reader branch), arrays/maps by items/values, fixed size,
and recursive types. Our unit table (tests/unit/registry/test_compatibility.py) pins that
behaviour case by case.

This module adds what Confluent layers on top:
- levels: BACKWARD (new reads old), FORWARD (old reads new), FULL (both), each against the
  latest version or, for *_TRANSITIVE, against every live version; NONE skips checks;
- Confluent-shaped messages for `?verbose=true` and 409 responses;
- one fix: Avro's checker compares reader aliases with the writer's *full* name only, so
  an alias written as a short name relative to the reader's namespace is resolved first.

Imports only the stdlib and avro.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
)


class Level(enum.StrEnum):
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @property
    def transitive(self) -> bool:
        return self.value.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        return self.value.startswith(("FORWARD", "FULL"))


DEFAULT_LEVEL = Level.BACKWARD


@dataclass(frozen=True)
class PreviousSchema:
    version: int
    schema: avro.schema.Schema
    text: str


def reader_can_read(reader: avro.schema.Schema, writer: avro.schema.Schema) -> list[str]:
    """Problems preventing `reader` from decoding data written with `writer` ([] if none)."""
    _qualify_aliases(reader)
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = [k.name.upper() for k in result.incompatibilities] or ["INCOMPATIBLE"]
    problems = []
    for kind, message, location in zip(
        kinds, sorted(result.messages), sorted(result.locations), strict=False
    ):
        problems.append(f"{{errorType:'{kind}', description:'at path '{location}': {message}'}}")
    return problems or [f"{{errorType:'{kinds[0]}'}}"]


def check(level: Level, new: avro.schema.Schema, previous: Sequence[PreviousSchema]) -> list[str]:
    """Messages describing why `new` violates `level` against `previous` (oldest first).

    An empty list means compatible. Non-transitive levels look at the latest version only.
    """
    if level is Level.NONE or not previous:
        return []
    targets = list(reversed(previous)) if level.transitive else [previous[-1]]
    for old in targets:
        problems: list[str] = []
        if level.backward:
            problems += reader_can_read(new, old.schema)
        if level.forward:
            problems += reader_can_read(old.schema, new)
        if problems:
            return [
                *problems,
                f"{{oldSchemaVersion: {old.version}}}",
                f"{{oldSchema: '{old.text}'}}",
                f"{{compatibility: '{level.value}'}}",
            ]
    return []


def _qualify_aliases(schema: avro.schema.Schema, seen: set[int] | None = None) -> None:
    """Rewrite short named-type aliases to full names (Avro spec: relative to the namespace)."""
    seen = set() if seen is None else seen
    if id(schema) in seen:
        return
    seen.add(id(schema))
    if isinstance(schema, avro.schema.NamedSchema):
        aliases = schema.props.get("aliases")
        namespace = schema.namespace
        if isinstance(aliases, list) and namespace:
            qualified = [a if "." in a else f"{namespace}.{a}" for a in aliases]
            schema.props["aliases"] = list(dict.fromkeys([*aliases, *qualified]))
    children: list[avro.schema.Schema] = []
    if isinstance(schema, avro.schema.RecordSchema):
        children = [f.type for f in schema.fields]
    elif isinstance(schema, avro.schema.UnionSchema):
        children = list(schema.schemas)
    elif isinstance(schema, avro.schema.ArraySchema):
        children = [schema.items]
    elif isinstance(schema, avro.schema.MapSchema):
        children = [schema.values]
    for child in children:
        _qualify_aliases(child, seen)
