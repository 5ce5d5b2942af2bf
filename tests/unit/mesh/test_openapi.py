"""The OpenAPI document tells the whole truth (mesh/openapi.py, mesh/validate_schema.py): it
is valid OpenAPI 3, every operation lists every status the edge and the services can
answer, and the schema's buf.validate rules are its JSON Schema constraints, so requests a
tool generates from the document pass the services' own validation (protovalidate)."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import protovalidate
import pytest
import schemathesis
from google.protobuf import json_format, symbol_database
from hypothesis import HealthCheck, assume, given, settings
from openapi_spec_validator import validate

from mesh import edge_errors, generate, openapi
from mesh.api import Api, HttpRule, Method, load

OUT = Path(generate.OUT)


@pytest.fixture(scope="module")
def api() -> Api:
    return load(generate.DESCRIPTOR)


@pytest.fixture(scope="module")
def spec(api) -> dict:
    return openapi.build(api)


def _operations(spec: dict):
    for path, verbs in spec["paths"].items():
        for verb, op in verbs.items():
            yield path, verb, op


def test_the_document_is_valid_openapi_3(spec) -> None:
    validate(spec)
    validate(json.loads((OUT / "openapi" / "openapi.json").read_text()))


def test_every_operation_lists_every_status(spec) -> None:
    for path, verb, op in _operations(spec):
        listed = set(op["responses"])
        assert {"200", *map(str, edge_errors.REST_STATUSES)} <= listed, (verb, path)
        for status, response in op["responses"].items():
            schema = response["content"]["application/json"]["schema"]
            if status != "200":
                assert schema == {"$ref": "#/components/schemas/Status"}
    login = spec["paths"]["/api/v1/auth/login"]["post"]
    refresh = spec["paths"]["/api/v1/auth/refresh"]["post"]
    assert "401" in login["responses"] and "401" in refresh["responses"]
    assert login["security"] == [], "public, and still answers 401 to wrong credentials"


def _body(spec: dict, path: str, verb: str = "post") -> dict:
    return spec["paths"][path][verb]["requestBody"]["content"]["application/json"]["schema"]


def _param(spec: dict, path: str, name: str, verb: str = "get") -> dict:
    (p,) = [p for p in spec["paths"][path][verb]["parameters"] if p["name"] == name]
    return p


def test_string_rules_become_lengths_patterns_and_formats(spec) -> None:
    register = _body(spec, "/api/v1/users")
    assert register["required"] == ["email", "password", "display_name"]
    props = register["properties"]
    assert props["email"]["format"] == "email" and props["email"]["maxLength"] == 254
    assert (props["password"]["minLength"], props["password"]["maxLength"]) == (8, 128)
    money = spec["components"]["schemas"]["shop.common.v1.Money"]
    assert money["properties"]["currency_code"]["pattern"] == "^[A-Z]{3}$"
    user_id = _param(spec, "/api/v1/users/{user_id}/addresses", "user_id")
    assert user_id["schema"]["pattern"] == "^[A-Za-z0-9_-]+$"
    assert user_id["schema"]["maxLength"] == 64


def test_optional_fields_keep_their_rules_but_are_not_required(spec) -> None:
    profile = _body(spec, "/api/v1/users/{id}", "patch")
    assert "display_name" not in profile.get("required", [])
    assert profile["properties"]["display_name"]["minLength"] == 1
    assert profile["properties"]["phone"]["pattern"].startswith("^(\\+[1-9]")


def test_number_and_list_rules_become_bounds(spec) -> None:
    page_size = _param(spec, "/api/v1/notifications", "page_size")
    assert page_size["schema"]["minimum"] == 0 and page_size["schema"]["maximum"] == 100
    assert page_size["required"] is False, "0 passes (it means the default)"
    assert _param(spec, "/api/v1/notifications", "user_id")["required"] is True
    replay = _body(spec, "/api/v1/notifications/dead-letters:replay")["properties"]
    assert replay["event_ids"]["maxItems"] == 1000
    assert replay["event_ids"]["items"]["minLength"] == 1
    assert replay["max_records"]["maximum"] == 10000


def test_required_messages_and_defined_enums(spec, api) -> None:
    add = _body(spec, "/api/v1/users/{user_id}/addresses")
    assert "address" in add["required"], "(buf.validate.field).required = true"
    for name, schema in spec["components"]["schemas"].items():
        if name in api.enums:
            assert schema["enum"] == list(api.enums[name].values)


def test_no_rule_kind_in_the_schemas_is_dropped(api, spec) -> None:
    """Every field with string, number, list or enum rules shows a constraint somewhere
    in the document (a rule kind the mapping forgot would pass the tests above)."""
    text = generate.dump_json(spec)
    keywords = ("minLength", "maxLength", "pattern", "format", "minimum", "maximum", "enum")
    keywords += ("minItems", "maxItems", "required")
    for msg in api.messages.values():
        for f in msg.fields:
            if f.rules is None or not f.rules.WhichOneof("type"):
                continue
            schema, must = openapi._Schemas(api).constrained(f)
            found = must or any(k in json.dumps(schema) for k in keywords)
            # defined_only: the enum's own schema lists exactly its defined names
            found = found or (f.type == "enum" and f.rules.enum.defined_only)
            assert found, f"{msg.full_name}.{f.name}: {f.rules}"
    assert '"minLength"' in text and '"maximum"' in text


# ------------------------------------------------------------------ generated requests pass


def _import_messages() -> None:
    """Import every generated *_pb2 module, so the request classes can be found by name."""
    root = generate.ROOT / "gen" / "python"
    for path in sorted((root / "shop").rglob("*_pb2.py")):
        importlib.import_module(".".join(path.relative_to(root).with_suffix("").parts))


def _request_message(api: Api, path: str, verb: str) -> tuple[Method, HttpRule, type]:
    _import_messages()
    for m in api.methods:
        for rule in m.http:
            template = re.sub(r"{([^}=]+)=[^}]*}", r"{\1}", rule.path)
            if rule.verb == verb and template == path:
                return m, rule, symbol_database.Default().GetSymbol(m.input_type)
    raise AssertionError(f"no method for {verb} {path}")


def _to_message(cls, op: dict, rule_body: str, case) -> object:
    """The request message a transcoder would build from the case (declared fields only)."""
    data: dict = {}
    body_schema = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    declared = set(body_schema.get("schema", {}).get("properties", {}))
    if rule_body == "*" and isinstance(case.body, dict):
        data.update({k: v for k, v in case.body.items() if k in declared})
    elif rule_body and case.body is not None:
        data[rule_body] = case.body
    for name, value in (case.query or {}).items():
        target = data
        *parents, leaf = name.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    data.update(case.path_parameters or {})
    msg = cls()
    json_format.ParseDict(data, msg, ignore_unknown_fields=True)
    return msg


def _cases() -> list:
    spec = openapi.build(load(generate.DESCRIPTOR))
    return [pytest.param(path, verb, id=f"{verb} {path}") for path, verb, _ in _operations(spec)]


@pytest.mark.parametrize(("path", "verb"), _cases())
def test_requests_generated_from_the_document_pass_protovalidate(api, spec, path, verb) -> None:
    _, rule, cls = _request_message(api, path, verb)
    op = spec["paths"][path][verb]
    operation = schemathesis.openapi.from_dict(spec)[path][verb.upper()]

    @settings(
        max_examples=20,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy())
    def check(case) -> None:
        # Parameters that only go together (x-shop-requires: a price filter's currency).
        params = {p["name"]: p for p in op.get("parameters", [])}
        for name in case.query or {}:
            assume(all(n in case.query for n in params[name].get("x-shop-requires", [])))
        msg = _to_message(cls, op, rule.body, case)
        violations = protovalidate.collect_violations(msg)
        assert not violations, (case.body, case.query, case.path_parameters, violations)

    check()


def test_64_bit_integer_patterns_hold_exactly_their_range() -> None:
    import random
    import re

    from mesh.openapi import _INT64, _UINT64

    int64, uint64 = re.compile(_INT64), re.compile(_UINT64)
    top = 2**63 - 1
    edges = [0, 9, 10, top - 1, top, top + 1, 9_230_000_000_000_000_000, -top, -(10**19)]
    rng = random.Random(7)
    for v in edges + [rng.randint(-(2**65), 2**65) for _ in range(20_000)]:
        assert bool(int64.match(str(v))) == (-top <= v <= top), v
        if v >= 0:
            assert bool(uint64.match(str(v))) == (v <= 2**64 - 1), v
