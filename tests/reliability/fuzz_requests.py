"""Hypothesis strategies for every request message, built from the proto descriptors (every
field, nested, with injection strings, edge integers, unknown enum values and NaNs), and
requests that differ from a valid one in one field. The schema's request types are
registered in the default pool first.
"""

from __future__ import annotations

import importlib
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from mesh.api import load
from mesh.generate import DESCRIPTOR

API = load(DESCRIPTOR)
METHODS = sorted(API.methods, key=lambda m: m.grpc_path)
for _svc in {m.service for m in METHODS}:  # register every request type in the pool
    _pkg = _svc.rsplit(".", 1)[0]
    importlib.import_module(f"{_pkg.replace('.', '.')}.{_pkg.split('.')[1]}_pb2")
POOL = descriptor_pool.Default()
INJECTIONS = [
    "' OR 1=1 --",
    "' OR '1'='1",
    "'; DROP TABLE products; --",
    "1; SELECT pg_sleep(10)",
    '{"$gt": ""}',
    '{"$ne": null}',
    "$where",
    "this.password.length > 0",
    "$regex",
    ".*",
    "%",
    "_",
    "\\",
    "\\x00",
    "\x00",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/x}",
    "{{7*7}}",
    "\u202e\u0645",
    "😀" * 20,
    "a" * 600,
    " ",
    "\r\nBcc: victim@example.com",
    "p-0001",
    "USD",
    "null",
    "true",
    "-1",
    "1e309",
]


def message_class(name: str) -> type[Message]:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(name))


# ---------------------------------------------------------------- strategies from descriptors

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
IDENT = st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True)
STRINGS = st.one_of(st.sampled_from(INJECTIONS), TEXT, IDENT, st.emails(), st.just(""))
INT32 = st.one_of(
    st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, -1, 5, 50, 51, 100, 101, 2**31 - 1])
)
INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 1, -1, 10**15]))
UINT32 = st.integers(0, 2**32 - 1)
UINT64 = st.integers(0, 2**64 - 1)
SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: STRINGS,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_FIXED32: UINT32,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32),
    FieldDescriptor.TYPE_DOUBLE: st.floats(),
}
TIMESTAMP = st.one_of(
    st.integers(0, 4_102_444_800), st.integers(-62_135_596_800, 253_402_300_799)
).map(lambda s: message_class("google.protobuf.Timestamp")(seconds=s))


def field_strategy(f: FieldDescriptor, overrides: dict[str, Any], depth: int) -> Any:
    if f.full_name in overrides:
        return overrides[f.full_name]
    if f.type == FieldDescriptor.TYPE_ENUM:
        values = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(values), st.integers(-3, 40))  # open enums
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        if f.message_type.full_name == "google.protobuf.Timestamp":
            return TIMESTAMP
        if depth >= 3:
            return st.none()
        return message_strategy(f.message_type, overrides, depth + 1)
    return SCALARS[f.type]


def message_strategy(
    desc: Descriptor, overrides: dict[str, Any], depth: int = 0
) -> st.SearchStrategy[Message]:
    """Any instance of `desc`: each field unset or drawn from its type (repeated: 0-4)."""
    cls = message_factory.GetMessageClass(desc)
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in desc.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            continue  # no maps in our requests; skipped rather than guessed
        inner = field_strategy(f, overrides, depth)
        is_list = f.is_repeated
        if is_list and f.full_name not in overrides:
            inner = st.lists(inner, max_size=4)
        optional[f.name] = inner

    def build(values: dict[str, Any]) -> Message:
        msg = cls()
        for name, value in values.items():
            if value is None:
                continue
            f = desc.fields_by_name[name]
            if f.is_repeated:
                target = getattr(msg, name)
                for v in value:
                    if v is None:
                        continue
                    if f.type == FieldDescriptor.TYPE_MESSAGE:
                        target.add().CopyFrom(v)
                    else:
                        target.append(v)
            elif f.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(msg, name).CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=optional).map(build)


def one_field_mutated(
    valid: st.SearchStrategy[Message], overrides: dict[str, Any]
) -> st.SearchStrategy[Message]:
    """A valid request with exactly one field (top level or nested, scalar or message)
    replaced by a value drawn for that field: the inputs most likely to get past some
    checks and trip a later one, where partial writes happen."""

    def slots(msg: Message) -> list[tuple[Message, FieldDescriptor]]:
        out = []
        for f in msg.DESCRIPTOR.fields:
            out.append((msg, f))
            if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.full_name != (
                "google.protobuf.Timestamp"
            ):
                inner = getattr(msg, f.name)
                for child in inner if f.is_repeated else [inner]:
                    out.extend(slots(child))
        return out

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = draw(valid)
        target, f = draw(st.sampled_from(slots(msg)))
        value = draw(field_strategy(f, overrides, 1))
        target.ClearField(f.name)
        if value is None:  # depth-capped message: the field stays cleared
            return msg
        if f.is_repeated:  # a list of one drawn element in place of the valid list
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(target, f.name).add().CopyFrom(value)
            else:
                getattr(target, f.name).append(value)
        else:
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(target, f.name).CopyFrom(value)
            else:
                setattr(target, f.name, value)
        return msg

    return build()
