"""The edge contract as generated (mesh/edge_errors.py, mesh/connect.py, mesh/nginx.py): who
gets which error shape from Envoy's local-reply mappers and NGINX's error pages, and how
Connect is wired into the edge chain and routes. Small evaluators of the matcher shapes we
generate stand in for Envoy and NGINX here; tests/e2e/test_edge_replies.py and
test_connect.py prove the same against the real servers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import google.api.annotations_pb2 as annotations_pb2
import pytest
import yaml
from google.protobuf import descriptor_pb2
from google.rpc import code_pb2

from mesh import connect, edge_errors, envoy, generate, nginx
from mesh.api import Api, load

OUT = Path(generate.OUT)


@pytest.fixture(scope="module")
def api() -> Api:
    return load(generate.DESCRIPTOR)


def _edge(cfg: dict) -> dict:
    (lst,) = [x for x in cfg["static_resources"]["listeners"] if x["name"] == "edge"]
    return lst["filter_chains"][0]["filters"][0]["typed_config"]


@pytest.fixture(scope="module", params=["generated", "committed"])
def edge(request, api) -> dict:
    if request.param == "generated":
        return _edge(envoy.build(api))
    return _edge(yaml.safe_load((OUT / "envoy" / "envoy.yaml").read_text()))


# ------------------------------------------------------------------ local-reply mappers


def _header_matches(spec: dict, headers: dict[str, str]) -> bool:
    value = headers.get(spec["name"])
    if value is None and spec.get("treat_missing_header_as_empty"):
        value = ""
    if value is None:
        # Envoy: an absent header matches only a present_match that asks for absence.
        if "present_match" in spec:
            return spec["present_match"] == bool(spec.get("invert_match"))
        return False
    if "present_match" in spec:
        hit = spec["present_match"]
    else:
        hit = value.startswith(spec["string_match"]["prefix"])
    return hit != bool(spec.get("invert_match"))


def _filter_matches(f: dict, status: int, headers: dict[str, str]) -> bool:
    if "and_filter" in f:
        return all(_filter_matches(x, status, headers) for x in f["and_filter"]["filters"])
    if "or_filter" in f:
        return any(_filter_matches(x, status, headers) for x in f["or_filter"]["filters"])
    if "status_code_filter" in f:
        cmp = f["status_code_filter"]["comparison"]
        value = cmp["value"]["default_value"]
        return status == value if cmp["op"] == "EQ" else status >= value
    if "header_filter" in f:
        return _header_matches(f["header_filter"]["header"], headers)
    raise AssertionError(f"a filter shape the evaluator does not know: {f}")


def _reply(edge: dict, status: int, headers: dict[str, str]) -> dict | None:
    """The body format of the first mapper that matches, as Envoy picks it."""
    for mapper in edge["local_reply_config"]["mappers"]:
        if _filter_matches(mapper["filter"], status, headers):
            return mapper["body_format_override"]["json_format"]
    return None


MARKER = edge_errors.PROTOCOL_HEADER
# Request headers as Envoy sees them when it replies (after the edge filters ran).
REST_GET = {}  # a GET the transcoder refused before rewriting it
REST_TRANSCODED = {"content-type": "application/grpc", "x-envoy-original-method": "POST"}
REST_JSON = {"content-type": "application/json"}
CONNECT_PROTO = {"content-type": "application/grpc+proto", MARKER: "1"}
CONNECT_JSON_GET = {
    "content-type": "application/grpc",
    "x-envoy-original-method": "POST",
    MARKER: "v1",
}
GRPC = {"content-type": "application/grpc"}  # gRPC, and gRPC-Web after its filter
GRPC_WEB_RAW = {"content-type": "application/grpc-web+proto"}


@pytest.mark.parametrize("err", edge_errors.ERRORS, ids=lambda e: str(e.http))
def test_rest_callers_get_google_rpc_status_json(edge, err) -> None:
    for headers in (REST_GET, REST_TRANSCODED, REST_JSON):
        body = _reply(edge, err.http, headers)
        assert body is not None, (err.http, headers)
        assert body["code"] == err.code and isinstance(body["code"], int)
        assert "%LOCAL_REPLY_BODY%" in body["message"]


@pytest.mark.parametrize("err", edge_errors.ERRORS, ids=lambda e: str(e.http))
def test_connect_callers_get_connect_error_json(edge, err) -> None:
    for headers in (CONNECT_PROTO, CONNECT_JSON_GET):
        body = _reply(edge, err.http, headers)
        assert body is not None and body["code"] == err.connect, (err.http, headers, body)
        assert body["code"] == body["code"].lower() and body["code"].isidentifier()


def test_grpc_and_grpc_web_callers_are_left_to_envoys_grpc_replies(edge) -> None:
    for err in edge_errors.ERRORS:
        for headers in (GRPC, GRPC_WEB_RAW):
            assert _reply(edge, err.http, headers) is None, (err.http, headers)


def test_the_codes_are_the_ones_grpc_and_connect_use(edge) -> None:
    expected = {
        400: ("INVALID_ARGUMENT", "invalid_argument"),
        401: ("UNAUTHENTICATED", "unauthenticated"),
        403: ("PERMISSION_DENIED", "permission_denied"),
        404: ("NOT_FOUND", "unimplemented"),  # to Connect an unknown path is unimplemented
        429: ("RESOURCE_EXHAUSTED", "resource_exhausted"),
        503: ("UNAVAILABLE", "unavailable"),
        504: ("DEADLINE_EXCEEDED", "deadline_exceeded"),
    }
    for http, (name, connect_name) in expected.items():
        assert _reply(edge, http, REST_GET)["code"] == code_pb2.Code.Value(name)
        assert _reply(edge, http, CONNECT_PROTO)["code"] == connect_name


def test_any_other_error_status_still_gets_json(edge) -> None:
    assert _reply(edge, 418, REST_GET)["code"] == code_pb2.UNKNOWN
    assert _reply(edge, 418, CONNECT_PROTO)["code"] == "unknown"
    assert _reply(edge, 200, REST_GET) is None, "a success is never rewritten"


def test_the_edge_writes_no_json_error_bodies_of_its_own(edge) -> None:
    """Direct responses carry plain text; the mappers give it each protocol's shape (a JSON
    body there would end up quoted inside the message)."""
    for route in edge["route_config"]["virtual_hosts"][0]["routes"]:
        direct = route.get("direct_response")
        if direct and direct["status"] >= 400:
            text = direct.get("body", {}).get("inline_string", "")
            assert not text.startswith("{"), route["name"]


# ------------------------------------------------------------------ NGINX error pages


def _conf(variant: str) -> str:
    return (OUT / "nginx" / variant).read_text()


def _protocol_map(conf: str) -> list[tuple[str, str]]:
    block = re.search(r"map \S+ \$edge_protocol \{\n(.*?)\n\s*\}", conf, re.S)
    assert block, "the $edge_protocol map"
    rules = [line.split() for line in block.group(1).splitlines() if line.strip()]
    return [(pattern, kind) for pattern, kind in ((r[0], r[1].rstrip(";")) for r in rules)]


def _classify(rules: list[tuple[str, str]], content_type: str, version: str, arg: str) -> str:
    value = f"{content_type}|{version}|{arg}"
    for pattern, kind in rules:
        if pattern == "default":
            continue
        if re.search(pattern.removeprefix("~"), value):
            return kind
    return dict(rules)["default"]


@pytest.mark.parametrize("variant", ["nginx.conf", "nginx.prod.conf"])
def test_nginx_tells_the_protocols_apart(variant) -> None:
    rules = _protocol_map(_conf(variant))
    assert _classify(rules, "application/json", "", "") == "rest"
    assert _classify(rules, "", "", "") == "rest"
    assert _classify(rules, "application/grpc-web+proto", "", "") == "grpc-web"
    assert _classify(rules, "application/grpc-web-text", "", "") == "grpc-web"
    assert _classify(rules, "application/grpc", "", "") == "grpc"
    assert _classify(rules, "application/json", "1", "") == "connect"
    assert _classify(rules, "application/proto", "1", "") == "connect"
    assert _classify(rules, "", "", "v1") == "connect"  # a Connect GET
    assert _classify(rules, "", "", "v2") == "rest"


@pytest.mark.parametrize("variant", ["nginx.conf", "nginx.prod.conf"])
def test_every_nginx_error_has_a_page_per_protocol(variant) -> None:
    conf = _conf(variant)
    api_block = conf[conf.index("location /api/ {") :]
    api_block = api_block[: api_block.index("}")]
    for status in (413, 429, 500, 502, 503, 504):
        assert f"error_page {status} /_edge_error/{status}/$edge_protocol;" in api_block
        for kind in ("rest", "connect", "grpc-web", "grpc"):
            assert f"location = /_edge_error/{status}/{kind} {{" in conf, (status, kind)
    directives = [line.split("#")[0] for line in conf.splitlines()]
    assert not any("proxy_intercept_errors" in d for d in directives), "Envoy's bodies pass"


def test_nginx_error_bodies_are_the_documented_json() -> None:
    for e in edge_errors.nginx_errors("1m", 100, 200):
        rest = json.loads(e.rest.strip("'").replace("\\'", "'"))
        connect_body = json.loads(e.connect.strip("'").replace("\\'", "'"))
        err = edge_errors.BY_STATUS[e.http]
        assert rest == {"code": err.code, "message": rest["message"]} and rest["message"]
        assert connect_body == {"code": err.connect, "message": rest["message"]}
        assert e.grpc_status == err.code
    texts = {e.http: e.rest for e in edge_errors.nginx_errors("1m", 100, 200)}
    assert "1 MiB" in texts[413] and "100 per second" in texts[429]


def test_nginx_strings_refuse_what_would_break_the_config() -> None:
    with pytest.raises(ValueError):
        edge_errors._nginx_quote("costs $5")
    assert edge_errors._nginx_quote("it's") == "'it\\'s'"


def test_nginx_read_timeout_is_an_option() -> None:
    assert "proxy_read_timeout 7s;" in nginx.render(nginx.NginxOptions(read_timeout="7s"))


# ------------------------------------------------------------------ Connect wiring


def test_connect_filters_sit_where_they_must(edge) -> None:
    names = [f["name"] for f in edge["http_filters"]]
    order = [
        "envoy.filters.http.header_mutation",  # strips the claims header (mesh/jwt.py)
        "shop.connect_marker",  # before the bridge removes what marks a Connect call
        "envoy.filters.http.grpc_web",
        "envoy.filters.http.connect_grpc_bridge",
        "envoy.filters.http.local_ratelimit",  # after both: its 429 in their shapes
        "shop.connect_unframe",  # Lua that unframes bridged Connect JSON, skipped otherwise
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.jwt_authn",  # sees the gRPC path of every protocol
        "envoy.filters.http.router",
    ]
    assert [n for n in names if n in order] == order
    marker = edge["http_filters"][names.index("shop.connect_marker")]["typed_config"]
    mutations = marker["mutations"]["request_mutations"]
    assert mutations[0] == {"remove": edge_errors.PROTOCOL_HEADER}, "a client cannot set it"


def test_the_lua_step_runs_only_for_bridged_connect_json(edge) -> None:
    wrapper = next(f for f in edge["http_filters"] if f["name"] == "shop.connect_unframe")
    cfg = wrapper["typed_config"]
    assert cfg["extension_config"]["name"] == "envoy.filters.http.lua"
    (matcher,) = cfg["xds_matcher"]["matcher_list"]["matchers"]
    skipped_unless = matcher["predicate"]["not_matcher"]["single_predicate"]
    assert skipped_unless["input"]["typed_config"]["header_name"] == "content-type"
    assert skipped_unless["value_match"] == {"exact": "application/grpc+json"}
    assert matcher["on_match"]["action"]["typed_config"]["@type"].endswith("SkipFilter")
    assert "application/grpc+json" in connect.UNFRAME_LUA and edge_errors.PROTOCOL_HEADER in (
        connect.UNFRAME_LUA
    )


def test_connect_json_route_carries_a_transcoder_that_keeps_grpc_errors(edge) -> None:
    routes = edge["route_config"]["virtual_hosts"][0]["routes"]
    assert routes[0]["name"] == "connect.json"
    per_route = routes[0]["typed_per_filter_config"][connect.TRANSCODER]
    rest = next(f for f in edge["http_filters"] if f["name"] == connect.TRANSCODER)
    assert per_route["convert_grpc_status"] is False, "the bridge writes Connect errors"
    assert rest["typed_config"]["convert_grpc_status"] is True
    assert per_route["proto_descriptor"] == rest["typed_config"]["proto_descriptor"]


def test_connect_get_only_for_read_methods(api, edge) -> None:
    routes = edge["route_config"]["virtual_hosts"][0]["routes"]
    guarded = {r["match"]["path"] for r in routes if r["name"].startswith("get.")}
    reads = {"GetProduct", "ListProducts", "GetOrder", "ListOrders", "GetJwks"}
    writes = {"PlaceOrder", "CancelOrder", "Login", "RegisterUser", "CreateProduct"}
    by_name = {m.name: m for m in api.methods}
    assert reads <= {m.name for m in api.methods if connect.get_allowed(m)}
    for name in writes:
        m = by_name[name]
        assert not connect.get_allowed(m)
        assert {m.grpc_path, "/api" + m.grpc_path} <= guarded, name
    for name in reads:
        assert by_name[name].grpc_path not in guarded, name


def test_the_descriptor_envoy_loads_binds_every_method_on_its_bare_path(api) -> None:
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString((OUT / "envoy" / "descriptor.binpb").read_bytes())
    bound = set()
    for f in fds.file:
        for svc in f.service:
            for m in svc.method:
                rule = m.options.Extensions[annotations_pb2.http]
                for r in (rule, *rule.additional_bindings):
                    if r.post == f"/{f.package}.{svc.name}/{m.name}" and r.body == "*":
                        bound.add(r.post)
    assert bound == {m.grpc_path for m in api.methods}
