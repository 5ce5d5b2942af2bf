"""One request per buf.validate rule, generated from the proto descriptors.

`rules_of_service` walks every request message of a service (nested messages and repeated
items included) and lists each (method, field path, rule) the schema declares. `cases`
starts from a valid request per method (given by the test) and, for each rule, changes only
that field to a value breaking that rule; protovalidate itself confirms the request then
fails on that one field only, with that rule among its violations (an empty id cannot break
min_len without breaking its `+` pattern too). A rule this module cannot break yet shows up
in `missing`, so a guard test fails instead of the suite silently covering less.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import protovalidate
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from buf.validate import validate_pb2
from services.runtime.errors import InvalidArgument
from services.runtime.validation import field_path, violations

# Rule options that only say how the others apply, not a rule of their own.
_MODIFIERS = {"ignore"}


@dataclass(frozen=True)
class Rule:
    method: str  # RPC name, e.g. CreateProduct
    path: str  # field path as the service names it, e.g. lines[0].quantity
    rule: str  # rule id as protovalidate reports it, e.g. string.min_len, repeated.min_items
    limit: Any  # the rule's value (min_len 1, pattern "...", True for uri/email/required)


@dataclass(frozen=True)
class Case:
    rule: Rule
    request: Message

    @property
    def id(self) -> str:
        return f"{self.rule.method}:{self.rule.path}:{self.rule.rule}"


def _field_rules(fd: FieldDescriptor) -> validate_pb2.FieldRules | None:
    opts = fd.GetOptions()
    if not opts.HasExtension(validate_pb2.field):
        return None
    return opts.Extensions[validate_pb2.field]


def _typed(rules: Any, path: str, method: str, out: list[Rule]) -> None:
    """Rules of one typed block (StringRules, Int32Rules, RepeatedRules ...) at `path`."""
    kind = rules.DESCRIPTOR.name.removesuffix("Rules").lower()
    for fd, value in rules.ListFields():
        if kind == "repeated" and fd.name == "items":
            typed = value.WhichOneof("type")
            if typed:
                _typed(getattr(value, typed), f"{path}[0]", method, out)
            continue
        out.append(Rule(method, path, f"{kind}.{fd.name}", value))


def _walk(desc: Descriptor, prefix: str, method: str, out: list[Rule], depth: int = 0) -> None:
    for fd in desc.fields:
        path = f"{prefix}{fd.name}"
        rules = _field_rules(fd)
        if rules is not None:
            for opt, value in rules.ListFields():
                if opt.name == "required" and value:
                    out.append(Rule(method, path, "required", True))
                elif opt.containing_oneof is not None and opt.containing_oneof.name == "type":
                    _typed(value, path, method, out)
                elif opt.name not in _MODIFIERS:
                    out.append(Rule(method, path, opt.name, value))  # unknown: no generator
        if fd.type == fd.TYPE_MESSAGE and depth < 4 and not fd.message_type.GetOptions().map_entry:
            item = f"{path}[0]." if fd.is_repeated else f"{path}."
            _walk(fd.message_type, item, method, out, depth + 1)


def rules_of_service(service: ServiceDescriptor) -> list[Rule]:
    """Every declared rule on every request message of `service`."""
    out: list[Rule] = []
    for m in service.methods:
        _walk(m.input_type, "", m.name, out)
    return out


# ------------------------------------------------------------------ paths

_STEP = re.compile(r"^(\w+)(?:\[(\d+)\])?$")


def _get(msg: Message, path: str) -> Any:
    value: Any = msg
    for step in path.split("."):
        name, index = _STEP.match(step).groups()  # type: ignore[union-attr]
        value = getattr(value, name)
        if index is not None:
            value = value[int(index)]
    return value


def _set(msg: Message, path: str, new: Any) -> None:
    *parents, last = path.split(".")
    holder: Any = _get(msg, ".".join(parents)) if parents else msg
    name, index = _STEP.match(last).groups()  # type: ignore[union-attr]
    if index is not None:
        getattr(holder, name)[int(index)] = new
    elif new is None:
        holder.ClearField(name)
    else:
        setattr(holder, name, new)


def _field_descriptor(msg: Message, path: str) -> FieldDescriptor:
    *parents, last = path.split(".")
    holder: Any = _get(msg, ".".join(parents)) if parents else msg
    return holder.DESCRIPTOR.fields_by_name[_STEP.match(last).group(1)]  # type: ignore[union-attr]


# ------------------------------------------------------------------ breaking values


def _candidates(rule: Rule, valid: Message) -> Iterator[Any]:
    """Values for the field at rule.path that should break rule.rule (checked after)."""
    kind, _, name = rule.rule.partition(".")
    limit = rule.limit
    if rule.rule == "required":
        yield None
        return
    current = _get(valid, rule.path) if kind != "repeated" else None
    if kind == "string":
        v = current or "a"
        if name == "min_len":
            yield v[: limit - 1]
        elif name == "max_len":
            pad = limit + 1 - len(v)
            yield v + v[-1] * pad
            yield v[0] * pad + v
            if "@" in v:  # an email: lengthen the domain in valid labels
                local, domain = v.split("@", 1)
                labels = []
                while len(local) + 1 + len(".".join([*labels, domain])) <= limit:
                    labels.append("d" * 60)
                yield f"{local}@{'.'.join([*labels, domain])}"
        elif name == "pattern":
            yield from (v + " x", v.lower(), v.upper(), "bad value!", "12345", "")
        elif name == "email":
            yield "not-an-email"
        elif name in ("uri", "uri_ref"):
            yield "not a uri"
            yield "https://x/%zz"  # a bad escape: no URI, whatever else the field allows
    elif kind in ("int32", "int64", "uint32", "uint64"):
        if name in ("gte", "gt"):
            yield limit - 1 if name == "gte" else limit
        elif name in ("lte", "lt"):
            yield limit + 1 if name == "lte" else limit
    elif kind == "enum" and name == "defined_only":
        fd = _field_descriptor(valid, rule.path)
        yield max(v.number for v in fd.enum_type.values) + 50
    elif kind == "enum" and name in ("in", "not_in"):
        fd = _field_descriptor(valid, rule.path)
        for v in fd.enum_type.values:
            if (v.number in limit) == (name == "not_in"):
                yield v.number
    elif kind == "repeated":
        items = list(_get(valid, rule.path))
        if name == "min_items":
            yield items[: limit - 1]
        elif name == "max_items" and items:
            yield (items * (limit + 1))[: limit + 1]


def _with(valid: Message, path: str, value: Any) -> Message:
    msg = type(valid)()
    msg.CopyFrom(valid)
    if isinstance(value, list):  # a whole repeated field
        holder = _get(msg, path)
        del holder[:]
        holder.extend(value)
    else:
        _set(msg, path, value)
    return msg


def _breaks_only(msg: Message, rule: Rule) -> bool:
    """protovalidate reports this rule on this field, and nothing on any other field."""
    found = [(field_path(v), v.proto.rule_id) for v in protovalidate.collect_violations(msg)]
    # A range is reported as one rule (int32.gte_lte), an empty URI as string.uri_empty.
    kind, _, name = rule.rule.rpartition(".")
    same = re.compile(rf"^{re.escape(kind)}{'.' if kind else ''}(\w+_)?{name}(_\w+)?$")
    return (
        bool(found)
        and all(p == rule.path for p, _ in found)
        and any(same.match(r) for _, r in found)
    )


def cases(rules: list[Rule], valid: dict[str, Message]) -> tuple[list[Case], list[Rule]]:
    """(one case per rule, the rules no case could be built for)."""
    built: list[Case] = []
    missing: list[Rule] = []
    for rule in rules:
        base = valid.get(rule.method)
        case = None
        if base is not None:
            for value in _candidates(rule, base):
                try:
                    msg = _with(base, rule.path, value)
                except (TypeError, ValueError, IndexError):
                    continue
                if _breaks_only(msg, rule):
                    case = Case(rule, msg)
                    break
        if case is None:
            missing.append(rule)
        else:
            built.append(case)
    return built, missing


# ------------------------------------------------------------------ the guard's own count


def rule_bearing_fields(service: ServiceDescriptor) -> set[tuple[str, str]]:
    """(message, field) of every field with buf.validate rules a request of `service` can
    reach: a plain scan of the descriptors, kept apart from `rules_of_service`."""
    found: set[tuple[str, str]] = set()
    seen: set[str] = set()
    todo = [m.input_type for m in service.methods]
    while todo:
        desc = todo.pop()
        if desc.full_name in seen:
            continue
        seen.add(desc.full_name)
        for fd in desc.fields:
            if _field_rules(fd) is not None:
                found.add((desc.full_name, fd.name))
            if fd.message_type is not None:
                todo.append(fd.message_type)
    return found


def field_of(case: Case) -> tuple[str, str]:
    """(message, field) the case's path ends at."""
    fd = _field_descriptor(case.request, case.rule.path)
    return fd.containing_type.full_name, fd.name


def expected_message(case: Case) -> str:
    """The INVALID_ARGUMENT text the runtime builds for this request."""
    found = violations(case.request)
    assert found, case.id
    return str(InvalidArgument.many(found))


def assert_cover_every_rule(
    service: ServiceDescriptor,
    valid: dict[str, Message],
    rules: list[Rule],
    built: list[Case],
    missing: list[Rule],
) -> None:
    """The guard each service's rule test runs: `valid` has one accepted request per method,
    and the cases built from it (`cases(rules, valid)`) cover every rule of every
    rule-bearing field, once each."""
    assert {m.name for m in service.methods} == set(valid)
    assert all(violations(msg) == [] for msg in valid.values())
    assert missing == [], f"no violating request built for: {missing}"
    assert len(built) == len(rules) > 0
    assert {field_of(c) for c in built} == rule_bearing_fields(service)
    assert len({c.id for c in built}) == len(built)


async def assert_refused_naming_the_field(stub: Any, case: Case) -> None:
    """The real service answers `case` INVALID_ARGUMENT with the rule's own message and only
    the broken field in the BadRequest details."""
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError

    try:
        await getattr(stub, case.rule.method)(case.request)
    except GRPCError as exc:
        err = exc
    else:
        raise AssertionError(f"{case.id}: accepted")
    assert err.status is Status.INVALID_ARGUMENT, err.message
    assert (err.message or "").startswith(f"{case.rule.path}: ")
    assert err.message == expected_message(case)
    fields = {v.field for d in err.details or [] for v in d.field_violations}
    assert fields == {case.rule.path}
