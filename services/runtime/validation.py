"""Schema-driven request validation: the buf.validate rules in the .proto files, enforced by
protovalidate on every incoming message (the server's call wrapper calls `validate`).

Handlers never validate by hand: a request that breaks a rule never reaches them, and the
client gets INVALID_ARGUMENT naming each field path, e.g.
`lines[0].quantity: must be greater than or equal to 1 and less than or equal to 1000`.
"""

from __future__ import annotations

from typing import Any

import protovalidate

from services.runtime.errors import FieldViolation, InvalidArgument


def field_path(violation: Any) -> str:
    """`lines[0].quantity` from a protovalidate FieldPath (indexes and map keys included)."""
    parts: list[str] = []
    for el in violation.proto.field.elements:
        name = el.field_name
        # protovalidate's own (protobuf-py) message: the oneof is an object, not WhichOneof.
        sub = el.subscript
        if sub is not None:
            name += f"[{sub.value!r}]" if sub.field == "string_key" else f"[{sub.value}]"
        parts.append(name)
    return ".".join(parts) or "(message)"


NUL_MESSAGE = "must not contain NUL (U+0000) characters"


def nul_violations(message: Any, prefix: str = "") -> list[FieldViolation]:
    """A platform-wide rule the schema does not spell out per field: no string may hold
    U+0000. PostgreSQL text cannot store it (the fuzzer got INTERNAL from product and user
    for one), and no name, address or id has a use for it. Walks only the fields set."""
    found: list[FieldViolation] = []
    for fd, value in message.ListFields():
        path = f"{prefix}{fd.name}"
        if fd.type == fd.TYPE_STRING:
            items = value if fd.is_repeated else (value,)
            for i, text in enumerate(items):
                if "\x00" in text:
                    where = f"{path}[{i}]" if fd.is_repeated else path
                    found.append(FieldViolation(where, NUL_MESSAGE))
        elif fd.type == fd.TYPE_MESSAGE:
            if fd.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    if isinstance(key, str) and "\x00" in key:
                        found.append(FieldViolation(f"{path}[{key!r}]", NUL_MESSAGE))
                    if isinstance(item, str):
                        if "\x00" in item:
                            found.append(FieldViolation(f"{path}[{key!r}]", NUL_MESSAGE))
                    elif hasattr(item, "ListFields"):
                        found += nul_violations(item, f"{path}[{key!r}].")
            elif fd.is_repeated:
                for i, item in enumerate(value):
                    found += nul_violations(item, f"{path}[{i}].")
            else:
                found += nul_violations(value, f"{path}.")
    return found


def violations(message: Any) -> list[FieldViolation]:
    """Every rule the message breaks, as (field path, description); empty when valid."""
    return [
        FieldViolation(field_path(v), v.proto.message or v.proto.rule_id)
        for v in protovalidate.collect_violations(message)
    ] + nul_violations(message)


def validate(message: Any) -> None:
    """Raise InvalidArgument listing every violation; return quietly when valid."""
    found = violations(message)
    if found:
        raise InvalidArgument.many(found)
