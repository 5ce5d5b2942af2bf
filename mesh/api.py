"""The API surface as the mesh sees it, read from the descriptor set (gen/descriptor/shop.binpb).

Everything the generators need is here: services (mapped to the manifest's, mesh/services.py),
methods with their `shop.mesh.v1.policy` option and google.api.http rules, messages with
field types and the proto comments. No generator reads the descriptor itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The extension modules must be imported before parsing so the options are not left as
# unknown fields.
import google.api.annotations_pb2 as annotations_pb2
from google.protobuf import descriptor_pb2

import buf.validate.validate_pb2 as validate_pb2
import shop.mesh.v1.options_pb2 as options_pb2
from mesh.services import SERVICES, calls

DEFAULT_TIMEOUT_MS = 5000  # options.proto: timeout_ms 0 means the default (5 s)

ACCESS = {
    options_pb2.ACCESS_PUBLIC: "public",
    options_pb2.ACCESS_USER: "user",
    options_pb2.ACCESS_ADMIN: "admin",
    options_pb2.ACCESS_INTERNAL: "internal",
}

PACKAGE_RE = re.compile(r"^shop\.([a-z][a-z0-9_]*)\.v\d+$")


class ApiError(ValueError):
    """The schemas break a rule the mesh depends on (e.g. an RPC without a policy)."""


@dataclass(frozen=True)
class HttpRule:
    verb: str  # get, post, put, patch, delete
    path: str  # template, e.g. /api/v1/products/{id}
    body: str  # "", "*" or a field name

    @property
    def path_params(self) -> list[str]:
        return [p.split("=")[0] for p in re.findall(r"{([^}]+)}", self.path)]


@dataclass(frozen=True)
class Method:
    service: str  # full service name, e.g. shop.product.v1.ProductService
    name: str
    input_type: str  # full message name without the leading dot
    output_type: str
    access: str  # public | user | admin | internal
    idempotent: bool
    timeout_ms: int
    http: tuple[HttpRule, ...]
    comment: str
    client_streaming: bool = False
    server_streaming: bool = False
    # Services allowed to call with their own identity (policy.callers), sorted.
    callers: tuple[str, ...] = ()

    @property
    def grpc_path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def edge(self) -> bool:
        """Reachable from outside (NGINX and Envoy's edge listener)."""
        return self.access != "internal"


@dataclass(frozen=True)
class Service:
    short: str  # key in mesh.services.SERVICES, e.g. "product"
    full_name: str  # shop.product.v1.ProductService
    package: str
    port: int
    comment: str
    methods: tuple[Method, ...]


@dataclass(frozen=True)
class Field:
    name: str
    number: int
    type: str  # descriptor type name without TYPE_, lower case: string, int64, message...
    type_name: str  # message/enum full name ("" for scalars)
    repeated: bool
    optional: bool  # proto3 `optional`
    comment: str
    map_entry: tuple[Field, Field] | None = None  # (key, value) for map fields
    # The field's buf.validate rules (None: none); mesh/openapi.py turns them into JSON
    # Schema constraints.
    rules: validate_pb2.FieldRules | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Message:
    full_name: str
    comment: str
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class Enum:
    full_name: str
    comment: str
    values: tuple[str, ...]


@dataclass
class Api:
    services: list[Service]
    messages: dict[str, Message] = field(default_factory=dict)
    enums: dict[str, Enum] = field(default_factory=dict)
    descriptor_bytes: bytes = b""

    @property
    def methods(self) -> list[Method]:
        return [m for s in self.services for m in s.methods]


def _comments(fd: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    out = {}
    for loc in fd.source_code_info.location:
        text = loc.leading_comments.strip() or loc.trailing_comments.strip()
        if text:
            out[tuple(loc.path)] = " ".join(line.strip() for line in text.splitlines()).strip()
    return out


def _http_rules(rule: annotations_pb2.http__pb2.HttpRule) -> list[HttpRule]:
    rules = []
    kind = rule.WhichOneof("pattern")
    if kind and kind != "custom":
        rules.append(HttpRule(kind, getattr(rule, kind), rule.body))
    elif kind == "custom":
        rules.append(HttpRule(rule.custom.kind.lower(), rule.custom.path, rule.body))
    for extra in rule.additional_bindings:
        rules.extend(_http_rules(extra))
    return rules


def _fields(
    msg: descriptor_pb2.DescriptorProto,
    path: tuple[int, ...],
    comments: Mapping[tuple[int, ...], str],
    map_entries: Mapping[str, descriptor_pb2.DescriptorProto],
) -> tuple[Field, ...]:
    out = []
    for i, f in enumerate(msg.field):
        tname = f.type_name.lstrip(".")
        entry = map_entries.get(tname)
        map_kv = None
        if entry is not None and f.label == f.LABEL_REPEATED:
            k, v = entry.field
            map_kv = tuple(
                Field(x.name, x.number, _type(x), x.type_name.lstrip("."), False, False, "")
                for x in (k, v)
            )
        out.append(
            Field(
                name=f.name,
                number=f.number,
                type=_type(f),
                type_name=tname,
                repeated=f.label == f.LABEL_REPEATED and map_kv is None,
                optional=f.proto3_optional,
                comment=comments.get((*path, 2, i), ""),
                map_entry=map_kv,  # type: ignore[arg-type]
                rules=_rules(f),
            )
        )
    return tuple(out)


def _rules(f: descriptor_pb2.FieldDescriptorProto) -> validate_pb2.FieldRules | None:
    if not f.options.HasExtension(validate_pb2.field):
        return None
    return f.options.Extensions[validate_pb2.field]


def _type(f: descriptor_pb2.FieldDescriptorProto) -> str:
    return descriptor_pb2.FieldDescriptorProto.Type.Name(f.type)[len("TYPE_") :].lower()


def load(descriptor: Path) -> Api:
    """Read the descriptor set and check the mesh's rules on it."""
    data = descriptor.read_bytes()
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(data)
    api = Api(services=[], descriptor_bytes=data)
    for fd in fds.file:
        comments = _comments(fd)
        _collect_types(fd, comments, api)
        for si, svc in enumerate(fd.service):
            api.services.append(_service(fd, si, svc, comments))
    api.services.sort(key=lambda s: s.full_name)
    return api


def _collect_types(
    fd: descriptor_pb2.FileDescriptorProto,
    comments: Mapping[tuple[int, ...], str],
    api: Api,
) -> None:
    def walk_enums(enums, prefix: str, path: tuple[int, ...], tag: int) -> None:
        for i, e in enumerate(enums):
            name = f"{prefix}.{e.name}"
            api.enums[name] = Enum(
                name, comments.get((*path, tag, i), ""), tuple(v.name for v in e.value)
            )

    def walk(msgs, prefix: str, path: tuple[int, ...], tag: int) -> None:
        for i, m in enumerate(msgs):
            name = f"{prefix}.{m.name}"
            mpath = (*path, tag, i)
            entries = {f"{name}.{n.name}": n for n in m.nested_type if n.options.map_entry}
            if not m.options.map_entry:
                api.messages[name] = Message(
                    name, comments.get(mpath, ""), _fields(m, mpath, comments, entries)
                )
            walk(m.nested_type, name, mpath, 3)
            walk_enums(m.enum_type, name, mpath, 4)

    walk(fd.message_type, fd.package, (), 4)
    walk_enums(fd.enum_type, fd.package, (), 5)


def _callers(where: str, pol: options_pb2.MethodPolicy) -> tuple[str, ...]:
    """policy.callers, checked: known service names, at least one on an internal method
    (nobody could call it), none on a public one (anyone may: a grant means nothing)."""
    unknown = sorted(set(pol.callers) - set(SERVICES))
    if unknown:
        raise ApiError(
            f"{where}: policy.callers names {unknown}, not services of schemas/topology.yaml "
            f"({sorted(SERVICES)})"
        )
    if len(set(pol.callers)) != len(pol.callers):
        raise ApiError(f"{where}: policy.callers names a service twice")
    if pol.access == options_pb2.ACCESS_INTERNAL and not pol.callers:
        raise ApiError(f"{where}: an internal method must name its callers (policy.callers)")
    if pol.access == options_pb2.ACCESS_PUBLIC and pol.callers:
        raise ApiError(f"{where}: a public method needs no callers (anyone may call it)")
    return tuple(sorted(pol.callers))


def _service(
    fd: descriptor_pb2.FileDescriptorProto,
    si: int,
    svc: descriptor_pb2.ServiceDescriptorProto,
    comments: Mapping[tuple[int, ...], str],
) -> Service:
    full = f"{fd.package}.{svc.name}"
    match = PACKAGE_RE.match(fd.package)
    if not match or match.group(1) not in SERVICES:
        raise ApiError(
            f"{full}: package {fd.package!r} has no service in schemas/topology.yaml "
            f"(expected shop.<name>.v1 with <name> one of {sorted(SERVICES)})"
        )
    short = match.group(1)
    methods = []
    for mi, m in enumerate(svc.method):
        if not m.options.HasExtension(options_pb2.policy):
            raise ApiError(f"{full}/{m.name}: missing option (shop.mesh.v1.policy)")
        pol = m.options.Extensions[options_pb2.policy]
        if pol.access not in ACCESS:
            raise ApiError(f"{full}/{m.name}: policy.access must be set")
        http = tuple(_http_rules(m.options.Extensions[annotations_pb2.http]))
        if pol.access == options_pb2.ACCESS_INTERNAL and http:
            raise ApiError(f"{full}/{m.name}: an internal method must not have a REST path")
        callers = _callers(f"{full}/{m.name}", pol)
        for caller in callers:
            # The manifest's calls open the network paths (NetworkPolicies, compose
            # addresses): a caller the schema allows must also be declared there.
            if short not in calls(caller):
                raise ApiError(
                    f"{full}/{m.name}: policy.callers names {caller!r}, but "
                    f"schemas/topology.yaml services.{caller}.calls does not list {short!r}"
                )
        methods.append(
            Method(
                service=full,
                name=m.name,
                input_type=m.input_type.lstrip("."),
                output_type=m.output_type.lstrip("."),
                access=ACCESS[pol.access],
                idempotent=pol.idempotent,
                timeout_ms=pol.timeout_ms or DEFAULT_TIMEOUT_MS,
                http=http,
                comment=comments.get((6, si, 2, mi), ""),
                client_streaming=m.client_streaming,
                server_streaming=m.server_streaming,
                callers=callers,
            )
        )
    return Service(
        short=short,
        full_name=full,
        package=fd.package,
        port=SERVICES[short],
        comment=comments.get((6, si), ""),
        methods=tuple(methods),
    )
