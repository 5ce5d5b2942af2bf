"""OpenAPI 3 for the REST surface (google.api.http rules) and its static HTML page."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

from mesh import edge_errors, validate_schema
from mesh.api import Api, Field, HttpRule, Method

TEMPLATES = Path(__file__).resolve().parent / "templates"

WKT: dict[str, dict] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "example": "1.5s"},
    "google.protobuf.FieldMask": {"type": "string", "example": "name,price"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    "google.protobuf.StringValue": {"type": "string", "nullable": True},
    "google.protobuf.BoolValue": {"type": "boolean", "nullable": True},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32", "nullable": True},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64", "nullable": True},
    "google.protobuf.DoubleValue": {"type": "number", "format": "double", "nullable": True},
}


def at_most(bound: int) -> str:
    """A regex of the decimal numbers 0..bound (no sign, no leading zeros past one digit
    count): a JSON Schema string of a 64-bit integer says its range, so a client that
    generates requests from the document (schemathesis, Dredd) stays in it."""
    digits = str(bound)
    shorter = f"[0-9]{{1,{len(digits) - 1}}}"
    same_length = []
    for i, d in enumerate(digits):
        rest = len(digits) - i - 1
        tail = f"[0-9]{{{rest}}}" if rest else ""
        if i == len(digits) - 1:
            same_length.append(f"{digits[:i]}[0-{d}]")
        elif d != "0":
            low = "1" if i == 0 else "0"
            if int(d) - 1 >= int(low):
                same_length.append(f"{digits[:i]}[{low}-{int(d) - 1}]{tail}")
    return "|".join([shorter, *same_length])


# -2**63 itself is left out (a bound of 2**63 - 1 both ways keeps one pattern).
_INT64 = f"^-?({at_most(2**63 - 1)})$"
_UINT64 = f"^({at_most(2**64 - 1)})$"


SCALARS: dict[str, dict] = {
    "string": {"type": "string"},
    "bytes": {"type": "string", "format": "byte"},
    "bool": {"type": "boolean"},
    "int32": {"type": "integer", "format": "int32"},
    "sint32": {"type": "integer", "format": "int32"},
    "sfixed32": {"type": "integer", "format": "int32"},
    "uint32": {"type": "integer", "format": "int64", "minimum": 0},
    "fixed32": {"type": "integer", "format": "int64", "minimum": 0},
    # proto3 JSON writes 64-bit integers as strings (JavaScript numbers lose precision).
    "int64": {"type": "string", "format": "int64", "pattern": _INT64},
    "sint64": {"type": "string", "format": "int64", "pattern": _INT64},
    "sfixed64": {"type": "string", "format": "int64", "pattern": _INT64},
    "uint64": {"type": "string", "format": "uint64", "pattern": _UINT64},
    "fixed64": {"type": "string", "format": "uint64", "pattern": _UINT64},
    "float": {"type": "number", "format": "float"},
    "double": {"type": "number", "format": "double"},
}

STATUS = {
    "type": "object",
    "description": "google.rpc.Status: the gRPC status code, a message and typed details "
    "(google.rpc.BadRequest lists every invalid field).",
    "properties": {
        "code": {"type": "integer", "format": "int32"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": WKT["google.protobuf.Any"]},
    },
}


def _summary(comment: str) -> str:
    first = re.split(r"(?<=\.)\s", comment, maxsplit=1)[0]
    return first.rstrip(".")


class _Schemas:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.out: dict[str, dict] = {}

    def ref(self, type_name: str) -> dict:
        if type_name in WKT:
            return dict(WKT[type_name])
        if type_name in self.api.enums:
            e = self.api.enums[type_name]
            self.out.setdefault(
                type_name, {"type": "string", "enum": list(e.values), "description": e.comment}
            )
            return {"$ref": f"#/components/schemas/{type_name}"}
        if type_name not in self.out:
            self.out[type_name] = {}  # placeholder: breaks recursion
            self.out[type_name] = self.message(type_name)
        return {"$ref": f"#/components/schemas/{type_name}"}

    def field(self, f: Field) -> dict:
        return self.constrained(f)[0]

    def constrained(self, f: Field) -> tuple[dict, bool]:
        """The field's schema with its buf.validate rules, and whether it must be sent."""
        if f.map_entry is not None:
            _, value = f.map_entry
            schema = {"type": "object", "additionalProperties": self.single(value)}
        elif f.repeated:
            schema = {"type": "array", "items": self.single(f)}
        else:
            schema = self.single(f)
        enum = self.api.enums.get(f.type_name) if f.type == "enum" else None
        schema, required = validate_schema.constrain(schema, f, enum.values if enum else ())
        if f.comment:
            if "$ref" in schema:  # OpenAPI 3.0 ignores siblings of $ref
                schema = {"allOf": [schema]}
            schema["description"] = f.comment
        return schema, required

    def single(self, f: Field) -> dict:
        if f.type in ("message", "enum"):
            return self.ref(f.type_name)
        return dict(SCALARS[f.type])

    def message(self, type_name: str, skip: set[str] | None = None) -> dict:
        msg = self.api.messages[type_name]
        props, required = {}, []
        for f in msg.fields:
            if f.name in (skip or set()):
                continue
            props[f.name], must = self.constrained(f)
            if must:
                required.append(f.name)
        schema: dict = {"type": "object", "properties": props}
        if required:
            schema["required"] = required
        if msg.comment:
            schema["description"] = msg.comment
        return schema


def _query_params(schemas: _Schemas, type_name: str, skip: set[str], prefix: str = "") -> list:
    """Non-path fields of a GET/DELETE request as query parameters (nested messages dotted,
    as Envoy's transcoder reads them)."""
    params = []
    for f in schemas.api.messages[type_name].fields:
        if f.name in skip or f.map_entry is not None:
            continue
        name = prefix + f.name
        if f.type == "message" and f.type_name not in WKT:
            if not prefix:  # one level deep is enough for filters like min_price.units
                params += _query_params(schemas, f.type_name, set(), name + ".")
            continue
        schema, required = schemas.constrained(f)
        schema.pop("description", None)
        # A nested field is needed only when its message is sent at all.
        p = {"name": name, "in": "query", "required": required and not prefix, "schema": schema}
        if f.repeated:
            p.update(style="form", explode=True)
        if f.comment:
            p["description"] = f.comment
        params.append(p)
    if prefix:
        # OpenAPI cannot say "these go together": the description does.
        needed = [
            p["name"]
            for p in params
            if schemas.constrained(_field(schemas, type_name, p["name"][len(prefix) :]))[1]
        ]
        for p in params:
            others = [n for n in needed if n != p["name"]]
            if others:
                together = f"Send with {', '.join(others)} (the {prefix[:-1]} rules)."
                p["description"] = f"{p.get('description', '')} {together}".strip()
                p["x-shop-requires"] = others
    return params


def _field(schemas: _Schemas, type_name: str, name: str) -> Field:
    return next(f for f in schemas.api.messages[type_name].fields if f.name == name)


def _path_schema(schemas: _Schemas, f: Field) -> dict:
    schema, _ = schemas.constrained(f)
    schema.pop("description", None)
    return schema


def _operation(schemas: _Schemas, m: Method, rule: HttpRule, n: int) -> dict:
    path_params = rule.path_params
    fields = {f.name: f for f in schemas.api.messages[m.input_type].fields}
    params = [
        {
            "name": p,
            "in": "path",
            "required": True,
            "schema": _path_schema(schemas, fields[p]) if p in fields else {"type": "string"},
            **({"description": fields[p].comment} if p in fields and fields[p].comment else {}),
        }
        for p in path_params
    ]
    op: dict = {
        "operationId": f"{m.service.rsplit('.', 1)[1]}_{m.name}" + (f"_{n}" if n else ""),
        "summary": _summary(m.comment) or m.name,
        "description": m.comment,
        "tags": [m.service.split(".")[1]],
        "x-grpc-method": m.grpc_path,
        "x-shop-access": m.access,
        "x-shop-idempotent": m.idempotent,
        "x-shop-timeout-ms": m.timeout_ms,
        "security": [] if m.access == "public" else [{"bearerAuth": []}],
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": schemas.ref(m.output_type)}},
            },
            # Every status the edge or the service can answer, public methods included
            # (Login and RefreshToken answer 401 by design; mesh/edge_errors.py).
            **{
                str(http): {
                    "description": edge_errors.BY_STATUS[http].meaning,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Status"}}
                    },
                }
                for http in edge_errors.REST_STATUSES
            },
        },
    }
    if rule.body == "*":
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": schemas.message(m.input_type, set(path_params))}
            },
        }
    elif rule.body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.field(fields[rule.body])}},
        }
        params += _query_params(schemas, m.input_type, {*path_params, rule.body})
    else:
        params += _query_params(schemas, m.input_type, set(path_params))
    if params:
        op["parameters"] = params
    return op


def build(api: Api) -> dict:
    schemas = _Schemas(api)
    paths: dict[str, dict] = {}
    for svc in api.services:
        for m in svc.methods:
            if not m.edge:
                continue
            for n, rule in enumerate(m.http):
                path = re.sub(r"{([^}=]+)=[^}]*}", r"{\1}", rule.path)
                paths.setdefault(path, {})[rule.verb] = _operation(schemas, m, rule, n)
    components = {"Status": STATUS, **schemas.out}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Shopmesh API",
            "version": "v1",
            "description": "REST surface of the Shopmesh services, generated from the proto "
            "schemas (google.api.http rules and shop.mesh.v1.policy). The same methods are "
            "served as gRPC-Web under /api/<package>.<Service>/<Method>. Field names are the "
            "proto names; 64-bit integers are strings; errors are google.rpc.Status JSON.",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": s.package.split(".")[1], "description": s.comment}
            for s in api.services
            if any(m.edge and m.http for m in s.methods)
        ],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def docs_html(spec: dict) -> str:
    """A readable API page rendered at generation time: no scripts, no CDN."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    ops = []
    for path, verbs in spec["paths"].items():
        for verb, op in verbs.items():
            ops.append({"path": path, "verb": verb.upper(), **op})
    ops.sort(key=lambda o: (o["tags"][0], o["path"], o["verb"]))
    return env.get_template("docs.html.j2").render(
        spec=spec, ops=ops, schema_name=_schema_name, type_of=_type_of
    )


def _schema_name(schema: dict) -> str:
    ref = schema.get("$ref") or (schema.get("allOf") or [{}])[0].get("$ref")
    return ref.rsplit("/", 1)[1] if ref else ""


def _type_of(schema: dict) -> str:
    name = _schema_name(schema)
    if name:
        return name
    if schema.get("type") == "array":
        return f"array of {_type_of(schema.get('items', {}))}"
    if schema.get("type") == "object" and "additionalProperties" in schema:
        add = schema["additionalProperties"]
        return f"map of {_type_of(add) if isinstance(add, dict) else 'any'}"
    fmt = schema.get("format")
    return f"{schema.get('type', 'any')}{f' ({fmt})' if fmt else ''}"
