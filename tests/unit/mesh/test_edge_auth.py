"""Token checks the mesh generator derives from the schema's access option (mesh/jwt.py,
mesh/envoy/, mesh/istio.py): the edge strips a client-sent claims header before anything
reads it, jwt_authn requires the auth provider on exactly the user and admin methods, RBAC
needs the admin role on exactly the admin methods, and Istio's policies say the same.

The filters are read from the generated config (and the committed mesh/out copy that the
stack runs); small evaluators of the rule shapes we generate say who gets through, so a
wrong matcher fails here and not only in the e2e suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import descriptor_pb2

import shop.mesh.v1.options_pb2 as options_pb2
from mesh import envoy, generate, istio, jwt
from mesh.api import Api, load
from mesh.services import SERVICES
from services.runtime.auth import (
    ADMIN_ROLE,
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    PAYLOAD_HEADER,
    service_issuer,
)

OUT = Path(generate.OUT)
JWT_AUTHN = "envoy.filters.http.jwt_authn"
RBAC = "envoy.filters.http.rbac"
STRIP = "envoy.filters.http.header_mutation"


@pytest.fixture(scope="module")
def api() -> Api:
    return load(generate.DESCRIPTOR)


def _edge_filters(cfg: dict) -> list[dict]:
    (edge,) = [x for x in cfg["static_resources"]["listeners"] if x["name"] == "edge"]
    return edge["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]


def _filter(filters: list[dict], name: str) -> dict:
    (f,) = [f for f in filters if f["name"] == name]
    return f["typed_config"]


def _configs(api: Api) -> dict[str, dict]:
    """The config as generated now, and as committed (what the local stack runs)."""
    committed = yaml.safe_load((OUT / "envoy" / "envoy.yaml").read_text())
    return {"generated": envoy.build(api), "committed": committed}


def _edge_paths(api: Api, access: set[str]) -> set[str]:
    return {
        p for m in api.methods if m.access in access for p in (m.grpc_path, "/api" + m.grpc_path)
    }


def _requires_token(jwt_cfg: dict, path: str) -> bool:
    """jwt_authn semantics for the rules we generate: the first rule whose exact path
    matches decides; no match means the request passes without a token check."""
    for rule in jwt_cfg["rules"]:
        assert set(rule["match"]) == {"path"}, "only exact path matches are generated"
        if rule["match"]["path"] == path:
            return rule.get("requires") == {"provider_name": jwt.PROVIDER}
    return False


def _permission_matches(perm: dict, path: str) -> bool:
    if "not_rule" in perm:
        return not _permission_matches(perm["not_rule"], path)
    if "or_rules" in perm:
        return any(_permission_matches(r, path) for r in perm["or_rules"]["rules"])
    return perm["url_path"]["path"]["exact"] == path


def _principal_matches(principal: dict, payload: dict) -> bool:
    if principal.get("any"):
        return True
    matcher = principal["sourced_metadata"]["metadata_matcher"]
    assert matcher["filter"] == JWT_AUTHN
    value: object = {jwt.METADATA_KEY: payload}  # jwt_authn's dynamic metadata
    for step in matcher["path"]:
        value = value.get(step["key"]) if isinstance(value, dict) else None
    wanted = matcher["value"]["list_match"]["one_of"]["string_match"]["exact"]
    return isinstance(value, list) and wanted in value


def _rbac_allows(rbac_cfg: dict, path: str, payload: dict) -> bool:
    rules = rbac_cfg["rules"]
    assert rules["action"] == "ALLOW"
    return any(
        any(_permission_matches(p, path) for p in pol["permissions"])
        and any(_principal_matches(p, payload) for p in pol["principals"])
        for pol in rules["policies"].values()
    )


# ------------------------------------------------------------------ claims header strip


@pytest.mark.parametrize("which", ["generated", "committed"])
def test_the_claims_header_is_stripped_first_on_the_edge(api, which) -> None:
    filters = _edge_filters(_configs(api)[which])
    names = [f["name"] for f in filters]
    # First of all: no filter (CORS, rate limit, gRPC-Web, transcoder, jwt_authn, RBAC)
    # and no upstream ever sees the client's copy.
    assert names[0] == STRIP, names
    assert names.index(STRIP) < names.index(JWT_AUTHN) < names.index(RBAC)
    assert names.count(STRIP) == 1
    mutations = _filter(filters, STRIP)["mutations"]["request_mutations"]
    assert {"remove": PAYLOAD_HEADER} in mutations
    # What is stripped is exactly the header jwt_authn writes the verified claims into.
    provider = _filter(filters, JWT_AUTHN)["providers"][jwt.PROVIDER]
    assert provider["forward_payload_header"] == PAYLOAD_HEADER == "x-shop-jwt-payload"


# ------------------------------------------------------------------ jwt_authn


@pytest.mark.parametrize("which", ["generated", "committed"])
def test_jwt_rules_require_the_provider_on_exactly_the_user_and_admin_methods(api, which) -> None:
    cfg = _filter(_edge_filters(_configs(api)[which]), JWT_AUTHN)
    protected = _edge_paths(api, {"user", "admin"})
    assert len(protected) >= 20  # a broken descriptor must not pass vacuously
    assert {r["match"]["path"] for r in cfg["rules"]} == protected | {jwt.OPS_AUTHZ_PATH}
    for rule in cfg["rules"]:  # no allow_missing, requires_any or a second provider
        assert rule["requires"] == {"provider_name": jwt.PROVIDER}, rule
    for m in api.methods:
        for path in (m.grpc_path, "/api" + m.grpc_path):
            expected = m.access in ("user", "admin")
            assert _requires_token(cfg, path) is expected, (path, m.access)
    assert _requires_token(cfg, jwt.OPS_AUTHZ_PATH)
    assert not _requires_token(cfg, jwt.JWKS_PATH)  # the JWKS itself is public


@pytest.mark.parametrize("which", ["generated", "committed"])
def test_the_provider_checks_issuer_audience_and_the_auth_services_jwks(api, which) -> None:
    cfg = _configs(api)[which]
    provider = _filter(_edge_filters(cfg), JWT_AUTHN)["providers"]
    assert set(provider) == {jwt.PROVIDER}
    p = provider[jwt.PROVIDER]
    assert p["issuer"] == DEFAULT_ISSUER
    assert p["audiences"] == [DEFAULT_AUDIENCE]
    # Tokens only from the Authorization header: never from a query parameter (Envoy's
    # default access_token param when no location is named), which would end up in logs.
    assert p.get("from_headers") == [{"name": "authorization", "value_prefix": "Bearer "}]
    assert "from_params" not in p and "from_cookies" not in p
    assert p["forward"] is True  # services verify the token again
    assert p["payload_in_metadata"] == jwt.METADATA_KEY  # what RBAC reads
    assert "local_jwks" not in p
    remote = p["remote_jwks"]
    edge_port = next(
        x["address"]["socket_address"]["port_value"]
        for x in cfg["static_resources"]["listeners"]
        if x["name"] == "edge"
    )
    assert remote["http_uri"]["uri"] == f"http://127.0.0.1:{edge_port}{jwt.JWKS_PATH}"
    # The JWKS cluster is Envoy's own edge listener, where the path is the auth service's
    # GetJwks (its REST binding), so the keys are the ones the auth service signs with.
    clusters = {c["name"]: c for c in cfg["static_resources"]["clusters"]}
    jwks = clusters[remote["http_uri"]["cluster"]]["load_assignment"]["endpoints"][0]
    addr = jwks["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (addr["address"], addr["port_value"]) == ("127.0.0.1", edge_port)
    get_jwks = next(m for m in api.methods if m.grpc_path == "/shop.auth.v1.AuthService/GetJwks")
    assert get_jwks.access == "public"
    assert jwt.JWKS_PATH in {r.path for r in get_jwks.http}
    assert remote["async_fetch"]  # fetched before the first request, refreshed in background


# ------------------------------------------------------------------ RBAC


@pytest.mark.parametrize("which", ["generated", "committed"])
def test_rbac_needs_the_admin_role_on_exactly_the_admin_methods(api, which) -> None:
    filters = _edge_filters(_configs(api)[which])
    rbac = _filter(filters, RBAC)
    customer = {"sub": "u-1", "roles": ["customer"]}
    admin = {"sub": "u-2", "roles": ["customer", ADMIN_ROLE]}
    forged_top_level = {"sub": "u-3", "roles": ["customer"], "admin": True, ADMIN_ROLE: True}
    admin_paths = _edge_paths(api, {"admin"})
    assert admin_paths
    for m in api.methods:
        for path in (m.grpc_path, "/api" + m.grpc_path):
            is_admin = m.access == "admin"
            assert _rbac_allows(rbac, path, admin), path
            assert _rbac_allows(rbac, path, customer) is not is_admin, (path, m.access)
            assert _rbac_allows(rbac, path, forged_top_level) is not is_admin, path
            assert _rbac_allows(rbac, path, {}) is not is_admin, path  # no token at all
    assert not _rbac_allows(rbac, jwt.OPS_AUTHZ_PATH, customer)
    assert _rbac_allows(rbac, jwt.OPS_AUTHZ_PATH, admin)


# ------------------------------------------------------------------ derived from the options


def _with_access(tmp_path: Path, full_path: str, access: int) -> Api:
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(generate.DESCRIPTOR.read_bytes())
    _, service, method = full_path.split("/")
    for f in fds.file:
        for s in f.service:
            if f"{f.package}.{s.name}" == service:
                for m in s.method:
                    if m.name == method:
                        m.options.Extensions[options_pb2.policy].access = access
    out = tmp_path / "mutated.binpb"
    out.write_bytes(fds.SerializeToString())
    return load(out)


def test_changing_a_methods_access_option_changes_its_edge_rules(tmp_path) -> None:
    path = "/shop.product.v1.ProductService/ListProducts"
    before = load(generate.DESCRIPTOR)
    assert next(m for m in before.methods if m.grpc_path == path).access == "public"
    for access, token, admin_only in (
        (options_pb2.ACCESS_USER, True, False),
        (options_pb2.ACCESS_ADMIN, True, True),
    ):
        api = _with_access(tmp_path, path, access)
        filters = _edge_filters(envoy.build(api))
        jwt_cfg, rbac = _filter(filters, JWT_AUTHN), _filter(filters, RBAC)
        for p in (path, "/api" + path):
            assert _requires_token(jwt_cfg, p) is token
            assert _rbac_allows(rbac, p, {"roles": ["customer"]}) is not admin_only
        allow = _allow_rules(istio.build(api)["product.yaml"])
        assert _istio_guard(allow, path)[0] == ("admin" if admin_only else "user")


# ------------------------------------------------------------------ Istio


def _allow_rules(docs: list[dict]) -> list[dict]:
    (allow,) = [
        d for d in docs if d["kind"] == "AuthorizationPolicy" and d["spec"]["action"] == "ALLOW"
    ]
    return allow["spec"]["rules"]


USER_SOURCE = {"requestPrincipals": ["*"], "notRequestPrincipals": ["shopmesh-service/*"]}


def _istio_guard(rules: list[dict], path: str) -> tuple[str, set[str]]:
    """How the ALLOW rules covering `path` let a request in: (the weakest guard for users,
    the services admitted as callers). Any matching rule admits, so one open rule makes the
    method public."""
    guards, callers = set(), set()
    for r in rules:
        if path not in r["to"][0]["operation"]["paths"]:
            continue
        sources = [f.get("source", {}) for f in r.get("from", [{}])]
        when = {w["key"]: w["values"] for w in r.get("when", [])}
        if sources == [{}] and not when:
            guards.add("public")
        elif sources == [USER_SOURCE] and when == {"request.auth.claims[sub]": ["*"]}:
            guards.add("user")
        elif sources == [USER_SOURCE] and when == {istio.ADMIN_CLAIM: [ADMIN_ROLE]}:
            guards.add("admin")
        elif not when and all(set(s) == {"principals", "requestPrincipals"} for s in sources):
            # One source per caller: its workload identity AND its own verified token.
            for s in sources:
                (principal,) = s["principals"]
                name = principal.rsplit("/sa/", 1)[1]
                assert principal == f"cluster.local/ns/{istio.NS}/sa/{name}"
                assert s["requestPrincipals"] == [f"{service_issuer(name)}/{name}"]
                callers.add(name)
            assert r["to"][0]["operation"]["paths"] == [path]  # per method, never shared
        else:
            raise AssertionError(f"unknown rule shape for {path}: {r}")
    for weakest in ("public", "user", "admin"):
        if weakest in guards:
            return weakest, callers
    return "none", callers


def test_istio_authorization_follows_each_methods_access_and_callers(api) -> None:
    files = istio.build(api)
    expected = {"public": "public", "user": "user", "admin": "admin", "internal": "none"}
    for svc in api.services:
        docs = files[f"{svc.short}.yaml"]
        rules = _allow_rules(docs)
        for m in svc.methods:
            assert _istio_guard(rules, m.grpc_path) == (expected[m.access], set(m.callers)), (
                m.grpc_path
            )
        internal = [m.grpc_path for m in svc.methods if m.access == "internal"]
        deny = [
            d for d in docs if d["kind"] == "AuthorizationPolicy" and d["spec"]["action"] == "DENY"
        ]
        if internal:
            (rule,) = deny[0]["spec"]["rules"]
            assert rule["from"][0]["source"]["principals"] == istio.EDGE_PRINCIPALS
            assert rule["to"][0]["operation"]["paths"] == internal
        else:
            assert not deny
    # The schema's grants, as generated: nobody else reaches stock or credentials.
    product = _allow_rules(files["product.yaml"])
    assert _istio_guard(product, "/shop.product.v1.ProductService/ReserveStock") == (
        "none",
        {"order"},
    )
    assert _istio_guard(product, "/shop.product.v1.ProductService/UpdateProduct") == (
        "admin",
        set(),
    )


def test_istio_request_authentication_matches_the_edge_provider(api) -> None:
    (req_auth,) = [d for d in istio.build(api)["mesh.yaml"] if d["kind"] == "RequestAuthentication"]
    rules = {r["issuer"]: r for r in req_auth["spec"]["jwtRules"]}
    user = rules[DEFAULT_ISSUER]
    provider = jwt.jwt_filter(api, 8081)["typed_config"]["providers"][jwt.PROVIDER]
    assert user["audiences"] == provider["audiences"] == [DEFAULT_AUDIENCE]
    assert user["outputPayloadToHeader"] == PAYLOAD_HEADER
    assert user["forwardOriginalToken"] is True
    assert user["jwksUri"].endswith(jwt.JWKS_PATH)
    for name in SERVICES:
        service = rules[service_issuer(name)]
        assert "outputPayloadToHeader" not in service
        # That service's keys only: GetServiceJwks' per-service REST binding.
        assert service["jwksUri"].endswith(f"{jwt.SERVICE_JWKS_PATH}/{name}")
