"""A valid request for any method, generated from the buf.validate rules of its descriptor.

`valid_request(method)` sets every field that carries a rule (nested messages and repeated
items included) to a value meeting all of that field's rules, so each rule is live: a
request that breaks one rule differs from it by one field (validation_cases.py builds
those). Strings come from their pattern (the smallest match of the regex, grown until the
length rules hold), email and uri rules from fixed shapes, numbers from their range,
enums from their `in` list or first defined non-zero value. protovalidate checks the result; a field
this module cannot satisfy raises, naming it, instead of yielding an invalid "valid" request.
"""

from __future__ import annotations

import re
import re._constants as sre_constants  # the stdlib's own regex parser (3.11)
import re._parser as sre_parse
from typing import Any

import protovalidate
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from buf.validate import validate_pb2
from mesh.stubs import message_class
from services.runtime.validation import field_path

MAX_DEPTH = 4


def valid_requests(service: Any) -> dict[str, Message]:
    """method name -> a valid request, for every method of a ServiceDescriptor."""
    return {m.name: valid_request(m) for m in service.methods}


def valid_request(method: MethodDescriptor) -> Message:
    msg = message_class(method.input_type)()
    _fill(msg, msg.DESCRIPTOR, 0)
    found = [(field_path(v), v.proto.rule_id) for v in protovalidate.collect_violations(msg)]
    if found:
        raise ValueError(f"{method.full_name}: no valid request generated: {found}")
    return msg


def _rules(fd: FieldDescriptor) -> validate_pb2.FieldRules | None:
    opts = fd.GetOptions()
    return opts.Extensions[validate_pb2.field] if opts.HasExtension(validate_pb2.field) else None


def _has_rules(desc: Descriptor, depth: int = 0) -> bool:
    """Some field of `desc` (or of a message below it) carries a rule."""
    if depth > MAX_DEPTH:
        return False
    return any(
        _rules(fd) is not None
        or (fd.message_type is not None and _has_rules(fd.message_type, depth + 1))
        for fd in desc.fields
    )


def _fill(msg: Message, desc: Descriptor, depth: int) -> None:
    for fd in desc.fields:
        rules = _rules(fd)
        nested = fd.message_type is not None and not fd.message_type.GetOptions().map_entry
        if rules is None and not (nested and _has_rules(fd.message_type, depth + 1)):
            continue
        if fd.is_repeated:
            _fill_repeated(msg, fd, rules, depth)
        elif nested:
            if depth < MAX_DEPTH:
                _fill(getattr(msg, fd.name), fd.message_type, depth + 1)
                getattr(msg, fd.name).SetInParent()  # `required` holds for an empty one too
        else:
            setattr(msg, fd.name, _scalar(fd, rules))


def _fill_repeated(
    msg: Message, fd: FieldDescriptor, rules: validate_pb2.FieldRules | None, depth: int
) -> None:
    rep = rules.repeated if rules is not None and rules.HasField("repeated") else None
    count = max(1, rep.min_items if rep is not None else 0)
    holder = getattr(msg, fd.name)
    if fd.message_type is not None:
        for _ in range(count):
            _fill(holder.add(), fd.message_type, depth + 1)
        return
    items = rep.items if rep is not None and rep.HasField("items") else None
    value = _scalar(fd, items)
    # unique items: vary the values (only strings need it in our schemas)
    holder.extend([value if i == 0 else f"{value}{i}" for i in range(count)])


def _scalar(fd: FieldDescriptor, rules: validate_pb2.FieldRules | None) -> Any:
    kind = rules.WhichOneof("type") if rules is not None else None
    typed = getattr(rules, kind) if kind else None
    if fd.type == fd.TYPE_STRING:
        return _string(fd, typed)
    if fd.type == fd.TYPE_ENUM:
        if typed is not None and typed.HasField("const"):
            return typed.const
        allowed = list(typed.__getattribute__("in")) if typed is not None else []
        defined = [v.number for v in fd.enum_type.values if v.number != 0]
        return (allowed or defined or [0])[0]
    if fd.type == fd.TYPE_BOOL:
        return True
    if fd.cpp_type in (fd.CPPTYPE_INT32, fd.CPPTYPE_INT64, fd.CPPTYPE_UINT32, fd.CPPTYPE_UINT64):
        return _number(typed)
    if fd.cpp_type in (fd.CPPTYPE_FLOAT, fd.CPPTYPE_DOUBLE):
        return float(_number(typed))
    if fd.type == fd.TYPE_BYTES:
        return b"x"
    raise ValueError(f"{fd.full_name}: no value for a {fd.type} field")


def _number(rules: Any) -> int:
    """1 when the range allows it, else its nearest bound."""
    lo = hi = None
    if rules is not None:
        if rules.HasField("gte"):
            lo = rules.gte
        elif rules.HasField("gt"):
            lo = rules.gt + 1
        if rules.HasField("lte"):
            hi = rules.lte
        elif rules.HasField("lt"):
            hi = rules.lt - 1
        if rules.HasField("const"):
            return rules.const
    if (lo is None or lo <= 1) and (hi is None or hi >= 1):
        return 1
    return lo if lo is not None else hi  # type: ignore[return-value]


def _string(fd: FieldDescriptor, rules: Any) -> str:
    if rules is None:
        return "x"
    lo = rules.min_len if rules.HasField("min_len") else 1
    hi = rules.max_len if rules.HasField("max_len") else max(lo, 64)
    if rules.HasField("const"):
        return rules.const
    if rules.email:
        base = "ada@example.com"
    elif rules.uri or rules.uri_ref:
        base = "https://example.com/a"
    elif rules.HasField("pattern"):
        for n in (1, 2, 3, 4, 8, lo, hi):
            value = _example(rules.pattern, n)
            if value is not None and lo <= len(value) <= hi:
                return value
        raise ValueError(f"{fd.full_name}: no string of {lo}..{hi} matching {rules.pattern!r}")
    else:
        base = "a"
    if len(base) < lo:
        base = base + "a" * (lo - len(base)) if not rules.email else "a" * (lo - len(base)) + base
    return base


def _example(pattern: str, n: int) -> str | None:
    """A string matching `pattern` in which every open-ended repeat repeats ~`n` times."""
    try:
        parsed = sre_parse.parse(pattern)
        out = "".join(_emit(parsed, n))
    except (ValueError, NotImplementedError, re.error):
        return None
    return out if re.fullmatch(pattern, out) else None


def _emit(items: Any, n: int) -> list[str]:
    out: list[str] = []
    for op, arg in items:
        if op is sre_constants.LITERAL:
            out.append(chr(arg))
        elif op is sre_constants.IN:
            out.append(_pick(arg))
        elif op is sre_constants.ANY:
            out.append("a")
        elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            low, high, sub = arg
            count = max(low, min(n, high if high is not sre_constants.MAXREPEAT else n))
            for _ in range(count):
                out.extend(_emit(sub, n))
        elif op is sre_constants.SUBPATTERN:
            out.extend(_emit(arg[-1], n))
        elif op is sre_constants.BRANCH:
            out.extend(_emit(arg[1][0], n))
        elif op is sre_constants.AT:
            continue  # ^ and $
        else:
            raise NotImplementedError(str(op))
    return out


def _pick(ranges: Any) -> str:
    """A character of a class: a lower-case letter if it has one, else its first member."""
    chars: list[str] = []
    for op, arg in ranges:
        if op is sre_constants.NEGATE:
            raise NotImplementedError("negated class")
        if op is sre_constants.LITERAL:
            chars.append(chr(arg))
        elif op is sre_constants.RANGE:
            chars.extend(chr(c) for c in range(arg[0], min(arg[1], arg[0] + 64) + 1))
        elif op is sre_constants.CATEGORY:
            chars.append({"CATEGORY_DIGIT": "1", "CATEGORY_WORD": "a"}.get(str(arg), "a"))
    for c in chars:
        if c.islower():
            return c
    if not chars:
        raise NotImplementedError("empty class")
    return chars[0]
