"""Compatibility table: (level, previous versions oldest first, new schema, compatible?)."""

from __future__ import annotations

import json

import pytest

from registry.avro_schema import parse
from registry.compatibility import Level, PreviousSchema, check, reader_can_read


def rec(*fields: dict, name: str = "R", ns: str = "t", **extra: object) -> str:
    return json.dumps(
        {"type": "record", "name": name, "namespace": ns, "fields": list(fields), **extra}
    )


def f(name: str, type_: object, **extra: object) -> dict:
    return {"name": name, "type": type_, **extra}


def enum(*symbols: str, **extra: object) -> dict:
    return {"type": "enum", "name": "E", "symbols": list(symbols), **extra}


BASE = rec(f("a", "int"))
WITH_B_DEFAULT = rec(f("a", "int"), f("b", "string", default=""))
WITH_B_NO_DEFAULT = rec(f("a", "int"), f("b", "string"))
ONLY_B = rec(f("b", "string", default="x"))
EMPTY = rec()

B, BT, F, FT, FU, FUT, N = (
    Level.BACKWARD,
    Level.BACKWARD_TRANSITIVE,
    Level.FORWARD,
    Level.FORWARD_TRANSITIVE,
    Level.FULL,
    Level.FULL_TRANSITIVE,
    Level.NONE,
)

CASES = [
    # --- record fields
    ("add field with default, backward", B, [BASE], WITH_B_DEFAULT, True),
    ("add field without default, backward", B, [BASE], WITH_B_NO_DEFAULT, False),
    ("add field without default, forward", F, [BASE], WITH_B_NO_DEFAULT, True),
    ("remove field without default, forward", F, [WITH_B_NO_DEFAULT], BASE, False),
    ("remove field with default, forward", F, [WITH_B_DEFAULT], BASE, True),
    ("remove field, backward", B, [WITH_B_NO_DEFAULT], BASE, True),
    ("add field with default, full", FU, [BASE], WITH_B_DEFAULT, True),
    ("add field without default, full", FU, [BASE], WITH_B_NO_DEFAULT, False),
    ("replace field without default, full", FU, [BASE], ONLY_B, False),
    ("anything goes under NONE", N, [BASE], rec(f("a", "string")), True),
    ("first version is always compatible", FUT, [], WITH_B_NO_DEFAULT, True),
    # --- promotions
    ("int -> long", B, [rec(f("a", "int"))], rec(f("a", "long")), True),
    ("int -> float", B, [rec(f("a", "int"))], rec(f("a", "float")), True),
    ("long -> double", B, [rec(f("a", "long"))], rec(f("a", "double")), True),
    ("float -> double", B, [rec(f("a", "float"))], rec(f("a", "double")), True),
    ("long -> int narrows", B, [rec(f("a", "long"))], rec(f("a", "int")), False),
    ("int -> long is not forward", F, [rec(f("a", "int"))], rec(f("a", "long")), False),
    ("string -> bytes", B, [rec(f("a", "string"))], rec(f("a", "bytes")), True),
    ("bytes -> string", B, [rec(f("a", "bytes"))], rec(f("a", "string")), True),
    ("string <-> bytes is full", FU, [rec(f("a", "string"))], rec(f("a", "bytes")), True),
    ("int -> string", B, [rec(f("a", "int"))], rec(f("a", "string")), False),
    # --- enums
    ("enum adds symbol, backward", B, [rec(f("e", enum("A")))], rec(f("e", enum("A", "B"))), True),
    ("enum adds symbol, forward", F, [rec(f("e", enum("A")))], rec(f("e", enum("A", "B"))), False),
    (
        "enum adds symbol, forward with reader default",
        F,
        [rec(f("e", enum("A", default="A")))],
        rec(f("e", enum("A", "B"))),
        True,
    ),
    (
        "enum removes symbol, backward",
        B,
        [rec(f("e", enum("A", "B")))],
        rec(f("e", enum("A"))),
        False,
    ),
    (
        "enum removes symbol, backward with default",
        B,
        [rec(f("e", enum("A", "B")))],
        rec(f("e", enum("A", default="A"))),
        True,
    ),
    # --- unions
    (
        "widen union, backward",
        B,
        [rec(f("u", ["null", "string"], default=None))],
        rec(f("u", ["null", "string", "int"], default=None)),
        True,
    ),
    (
        "widen union, forward",
        F,
        [rec(f("u", ["null", "string"], default=None))],
        rec(f("u", ["null", "string", "int"], default=None)),
        False,
    ),
    (
        "plain -> union containing it",
        B,
        [rec(f("u", "string"))],
        rec(f("u", ["null", "string"], default=None)),
        True,
    ),
    (
        "union -> plain, backward",
        B,
        [rec(f("u", ["null", "string"], default=None))],
        rec(f("u", "string")),
        False,
    ),
    (
        "union branch promoted",
        B,
        [rec(f("u", ["null", "int"], default=None))],
        rec(f("u", ["null", "long"], default=None)),
        True,
    ),
    # --- nested records, arrays, maps, fixed
    (
        "nested record gains defaulted field",
        B,
        [rec(f("n", json.loads(rec(f("x", "int"), name="N"))))],
        rec(f("n", json.loads(rec(f("x", "int"), f("y", "int", default=0), name="N")))),
        True,
    ),
    (
        "nested record gains required field",
        B,
        [rec(f("n", json.loads(rec(f("x", "int"), name="N"))))],
        rec(f("n", json.loads(rec(f("x", "int"), f("y", "int"), name="N")))),
        False,
    ),
    (
        "array items promoted",
        B,
        [rec(f("l", {"type": "array", "items": "int"}))],
        rec(f("l", {"type": "array", "items": "long"})),
        True,
    ),
    (
        "array items changed",
        B,
        [rec(f("l", {"type": "array", "items": "int"}))],
        rec(f("l", {"type": "array", "items": "string"})),
        False,
    ),
    (
        "map values promoted",
        B,
        [rec(f("m", {"type": "map", "values": "float"}))],
        rec(f("m", {"type": "map", "values": "double"})),
        True,
    ),
    (
        "map values narrowed",
        B,
        [rec(f("m", {"type": "map", "values": "double"}))],
        rec(f("m", {"type": "map", "values": "float"})),
        False,
    ),
    (
        "fixed same size",
        FU,
        [rec(f("x", {"type": "fixed", "name": "X", "size": 4}))],
        rec(f("x", {"type": "fixed", "name": "X", "size": 4})),
        True,
    ),
    (
        "fixed size change",
        B,
        [rec(f("x", {"type": "fixed", "name": "X", "size": 4}))],
        rec(f("x", {"type": "fixed", "name": "X", "size": 8})),
        False,
    ),
    # --- names and aliases
    ("record renamed", B, [rec(f("a", "int"))], rec(f("a", "int"), name="S"), False),
    (
        "record renamed with alias",
        B,
        [rec(f("a", "int"))],
        rec(f("a", "int"), name="S", aliases=["R"]),
        True,
    ),
    (
        "record renamed with full-name alias",
        B,
        [rec(f("a", "int"))],
        rec(f("a", "int"), name="S", aliases=["t.R"]),
        True,
    ),
    ("field renamed", B, [rec(f("a", "int"))], rec(f("z", "int")), False),
    ("field renamed with alias", B, [rec(f("a", "int"))], rec(f("z", "int", aliases=["a"])), True),
    # --- transitive levels
    (
        "backward vs latest only ignores v1",
        B,
        [rec(f("a", "int")), rec(f("b", "string", default=""))],
        rec(f("b", "string")),
        True,
    ),
    (
        "backward transitive rejects the same change",
        BT,
        [rec(f("a", "int")), rec(f("b", "string", default=""))],
        rec(f("b", "string")),
        False,
    ),
    (
        "backward transitive sees v1",
        BT,
        [rec(f("a", "int"), f("b", "string")), rec(f("b", "string"))],
        rec(f("b", "string"), f("c", "int")),
        False,
    ),
    (
        "backward transitive all good",
        BT,
        [rec(f("a", "int")), rec(f("a", "int"), f("b", "string", default=""))],
        rec(f("a", "long"), f("b", "string", default=""), f("c", "int", default=0)),
        True,
    ),
    (
        "forward transitive sees v1",
        FT,
        [rec(f("a", "int"), f("b", "string")), rec(f("a", "int"), f("b", "string", default=""))],
        rec(f("a", "int")),
        False,
    ),
    (
        "forward non-transitive ignores v1",
        F,
        [rec(f("a", "int"), f("b", "string")), rec(f("a", "int"), f("b", "string", default=""))],
        rec(f("a", "int")),
        True,
    ),
    (
        "full transitive sees v1",
        FUT,
        [rec(f("a", "int")), rec(f("a", "int"), f("b", "int", default=0))],
        rec(f("a", "int"), f("b", "int", default=0), f("c", "long")),
        False,
    ),
    (
        "full transitive all good",
        FUT,
        [rec(f("a", "int")), rec(f("a", "int"), f("b", "int", default=0))],
        rec(f("a", "int"), f("b", "int", default=0), f("c", "long", default=0)),
        True,
    ),
]


def _previous(texts: list[str]) -> list[PreviousSchema]:
    return [PreviousSchema(i + 1, parse(t).schema, t) for i, t in enumerate(texts)]


@pytest.mark.parametrize(
    ("level", "previous", "new", "compatible"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_compatibility_table(level: Level, previous: list[str], new: str, compatible: bool) -> None:
    messages = check(level, parse(new).schema, _previous(previous))
    assert (not messages) is compatible, messages


def test_table_covers_every_level() -> None:
    assert len(CASES) >= 30
    assert {c[1] for c in CASES} == set(Level)


def test_incompatible_messages_name_the_problem_and_old_version() -> None:
    messages = check(B, parse(WITH_B_NO_DEFAULT).schema, _previous([BASE]))
    assert any("READER_FIELD_MISSING_DEFAULT_VALUE" in m and "b" in m for m in messages)
    assert "{oldSchemaVersion: 1}" in messages
    assert "{compatibility: 'BACKWARD'}" in messages


def test_recursive_schema_is_compatible_with_itself() -> None:
    linked = rec(f("v", "int"), f("next", ["null", "t.R"], default=None))
    assert reader_can_read(parse(linked).schema, parse(linked).schema) == []
