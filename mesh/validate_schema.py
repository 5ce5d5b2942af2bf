"""buf.validate field rules -> OpenAPI 3.0 schema keywords (for mesh/openapi.py).

The rules that have a JSON Schema twin become one: string lengths, patterns and formats,
number bounds, `in`/`const` lists, item and pair counts. A field is `required` when its
rules refuse the value an omitted JSON field decodes to (proto3: the zero value), or say
`required`. Rules with no twin (CEL, bytes lengths, timestamps, 64-bit integer bounds on
their JSON strings) stay out, so the document never promises more than the services check;
what it does say, the services enforce (tests/unit/mesh/test_openapi.py generates requests
from the document and runs protovalidate over them).
"""

from __future__ import annotations

import re
from typing import Any

import buf.validate.validate_pb2 as v
from mesh.api import Field

NUMBER_KINDS = {
    "int32",
    "sint32",
    "sfixed32",
    "uint32",
    "fixed32",
    "float",
    "double",
}
# 64-bit integers are strings in proto3 JSON: bounds have no JSON Schema twin there.
STRING_NUMBER_KINDS = {"int64", "sint64", "sfixed64", "uint64", "fixed64"}
FORMATS = {
    "email": "email",
    "hostname": "hostname",
    "uri": "uri",
    "uri_ref": "uri-reference",
    "uuid": "uuid",
    "ipv4": "ipv4",
    "ipv6": "ipv6",
}


def constrain(schema: dict, f: Field, enum_values: tuple[str, ...] = ()) -> tuple[dict, bool]:
    """`schema` (the field's type) with its rules added, and whether it must be sent.
    `enum_values` are the value names when the field is an enum."""
    rules = f.rules
    if rules is None or rules.ignore == v.IGNORE_ALWAYS:
        return schema, False
    kind = rules.WhichOneof("type")
    schema = dict(schema)
    if f.map_entry is not None:
        if kind == "map":
            _map(schema, rules.map, f)
        return schema, False
    if f.repeated:
        if kind == "repeated":
            _repeated(schema, rules.repeated, f, enum_values)
        must = kind == "repeated" and rules.repeated.min_items > 0
        return schema, must or rules.required
    keywords, zero_ok = _scalar(kind, rules, f.type, enum_values)
    if rules.ignore == v.IGNORE_IF_ZERO_VALUE and keywords:
        # The rules only apply to a value that is set: the zero value passes too.
        keywords = {"anyOf": [{"enum": [_zero(f.type, enum_values)]}, keywords]}
        zero_ok = True
    schema = _merge(schema, keywords)
    implicit = not f.optional and f.type != "message"
    must = rules.required or (implicit and not zero_ok)
    return schema, must


def _merge(schema: dict, keywords: dict) -> dict:
    if not keywords:
        return schema
    if "$ref" in schema:  # OpenAPI 3.0 ignores siblings of $ref
        return {"allOf": [schema], **keywords}
    return {**schema, **keywords}


def _zero(type_: str, enum_values: tuple[str, ...]) -> Any:
    if type_ == "string" or type_ == "bytes" or type_ in STRING_NUMBER_KINDS:
        return "0" if type_ in STRING_NUMBER_KINDS else ""
    if type_ == "bool":
        return False
    if type_ == "enum":
        return enum_values[0] if enum_values else 0
    return 0


def _scalar(
    kind: str | None, rules: v.FieldRules, type_: str, enum_values: tuple[str, ...]
) -> tuple[dict, bool]:
    """(keywords, whether the zero value passes) for one scalar value's rules."""
    if kind == "string":
        return _string(rules.string)
    if kind in NUMBER_KINDS:
        return _number(getattr(rules, kind))
    if kind in STRING_NUMBER_KINDS:
        return _number(getattr(rules, kind), as_strings=True)
    if kind == "enum":
        return _enum(rules.enum, enum_values)
    if kind == "bool" and rules.bool.HasField("const"):
        return {"enum": [rules.bool.const]}, rules.bool.const is False
    return {}, True


def _string(r: v.StringRules) -> tuple[dict, bool]:
    out: dict = {}
    patterns = []
    if r.HasField("len"):
        out["minLength"] = out["maxLength"] = r.len
    if r.HasField("min_len"):
        out["minLength"] = r.min_len
    if r.HasField("max_len"):
        out["maxLength"] = r.max_len
    if r.HasField("pattern"):
        patterns.append(r.pattern)
    if r.HasField("prefix"):
        patterns.append("^" + re.escape(r.prefix))
    if r.HasField("suffix"):
        patterns.append(re.escape(r.suffix) + "$")
    if r.HasField("contains"):
        patterns.append(re.escape(r.contains))
    if len(patterns) == 1:
        out["pattern"] = patterns[0]
    elif patterns:  # all of them: one lookahead each, from the start
        out["pattern"] = "^" + "".join(f"(?=[\\s\\S]*(?:{p}))" for p in patterns)
    well_known = r.WhichOneof("well_known")
    if well_known in FORMATS and getattr(r, well_known):
        out["format"] = FORMATS[well_known]
    if r.HasField("const"):
        out["enum"] = [r.const]
    elif getattr(r, "in"):
        out["enum"] = list(getattr(r, "in"))
    if r.not_in:
        out["not"] = {"enum": list(r.not_in)}
    if r.example:
        out["example"] = r.example[0]
    zero_ok = (
        out.get("minLength", 0) == 0
        and all(re.search(p, "") for p in patterns)
        and not well_known
        and ("enum" not in out or "" in out["enum"])
        and "" not in r.not_in
    )
    return out, zero_ok


def _number(r: Any, as_strings: bool = False) -> tuple[dict, bool]:
    fields = r.DESCRIPTOR.fields_by_name
    out: dict = {}
    values = [r.const] if r.HasField("const") else list(getattr(r, "in"))
    not_in = list(r.not_in)
    zero_ok = True
    if values:
        out["enum"] = [str(x) for x in values] if as_strings else values
        zero_ok = 0 in values
    if not_in:
        out["not"] = {"enum": [str(x) for x in not_in] if as_strings else not_in}
        zero_ok = zero_ok and 0 not in not_in
    for name, keyword, exclusive, ok in (
        ("gt", "minimum", True, lambda b: b < 0),
        ("gte", "minimum", False, lambda b: b <= 0),
        ("lt", "maximum", True, lambda b: b > 0),
        ("lte", "maximum", False, lambda b: b >= 0),
    ):
        if name in fields and r.HasField(name):
            bound = getattr(r, name)
            zero_ok = zero_ok and ok(bound)
            if not as_strings:
                out[keyword] = bound
                if exclusive:
                    out["exclusive" + keyword.capitalize()] = True
    if "example" in fields and r.example and not as_strings:
        out["example"] = r.example[0]
    return out, zero_ok


def _enum(r: v.EnumRules, names: tuple[str, ...]) -> tuple[dict, bool]:
    # Enum values are listed by name; `in`/`const` hold numbers in declaration order only
    # when the enum is numbered 0, 1, 2 ... (ours are): map them through the names.
    numbers = [r.const] if r.HasField("const") else list(getattr(r, "in"))
    allowed = [names[n] for n in numbers if 0 <= n < len(names)] if numbers else list(names)
    allowed = [n for i, n in enumerate(allowed) if names.index(n) not in r.not_in]
    zero_ok = bool(names) and names[0] in allowed
    if allowed == list(names):
        return {}, zero_ok
    return {"enum": allowed}, zero_ok


def _repeated(schema: dict, r: v.RepeatedRules, f: Field, enum_values: tuple[str, ...]) -> None:
    if r.HasField("min_items"):
        schema["minItems"] = r.min_items
    if r.HasField("max_items"):
        schema["maxItems"] = r.max_items
    if r.unique:
        schema["uniqueItems"] = True
    if r.HasField("items"):
        kind = r.items.WhichOneof("type")
        keywords, _ = _scalar(kind, r.items, f.type, enum_values)
        schema["items"] = _merge(schema["items"], keywords)


def _map(schema: dict, r: v.MapRules, f: Field) -> None:
    if r.HasField("min_pairs"):
        schema["minProperties"] = r.min_pairs
    if r.HasField("max_pairs"):
        schema["maxProperties"] = r.max_pairs
    if r.HasField("values") and f.map_entry is not None:
        value = f.map_entry[1]
        keywords, _ = _scalar(r.values.WhichOneof("type"), r.values, value.type, ())
        schema["additionalProperties"] = _merge(schema["additionalProperties"], keywords)
