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


def violations(message: Any) -> list[FieldViolation]:
    """Every rule the message breaks, as (field path, description); empty when valid."""
    return [
        FieldViolation(field_path(v), v.proto.message or v.proto.rule_id)
        for v in protovalidate.collect_violations(message)
    ]


def validate(message: Any) -> None:
    """Raise InvalidArgument listing every violation; return quietly when valid."""
    found = violations(message)
    if found:
        raise InvalidArgument.many(found)
