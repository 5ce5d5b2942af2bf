"""Who may call what on Envoy's internal listener, as generated from the schema's policy
(mesh/jwt.py internal_filters): every protected method needs a verified token; each service
identity has its own provider bound to its own keys; RBAC admits on each method exactly the
services its `callers` name (and user tokens on user/admin methods). A small evaluator of
the rule shapes we generate decides, so a wrong matcher fails here, not only in e2e."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import descriptor_pb2

import shop.mesh.v1.options_pb2 as options_pb2
from mesh import api as mesh_api
from mesh import envoy, generate, jwt
from mesh.api import Api, ApiError, load
from mesh.services import SERVICES
from services.runtime.auth import (
    ADMIN_ROLE,
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    SERVICE_AUDIENCE,
    service_issuer,
)

JWT_AUTHN = "envoy.filters.http.jwt_authn"
RBAC = "envoy.filters.http.rbac"


@pytest.fixture(scope="module")
def api() -> Api:
    return load(generate.DESCRIPTOR)


def _internal(cfg: dict) -> dict[str, dict]:
    (listener,) = [x for x in cfg["static_resources"]["listeners"] if x["name"] == "internal"]
    filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    return {f["name"]: f.get("typed_config", {}) for f in filters}


def _configs(api: Api) -> dict[str, dict]:
    committed = yaml.safe_load((generate.OUT / "envoy" / "envoy.yaml").read_text())
    return {"generated": envoy.build(api), "committed": committed}


def _matches(principal: dict, payload: dict) -> bool:
    if principal.get("any"):
        return True
    if "and_ids" in principal:
        return all(_matches(p, payload) for p in principal["and_ids"]["ids"])
    matcher = principal["sourced_metadata"]["metadata_matcher"]
    assert matcher["filter"] == JWT_AUTHN
    value: object = {jwt.METADATA_KEY: payload}
    for step in matcher["path"]:
        value = value.get(step["key"]) if isinstance(value, dict) else None
    want = matcher["value"]
    if "string_match" in want:
        return value == want["string_match"]["exact"]
    return (
        isinstance(value, list) and want["list_match"]["one_of"]["string_match"]["exact"] in value
    )


def _permits(perm: dict, path: str) -> bool:
    if "not_rule" in perm:
        return not _permits(perm["not_rule"], path)
    if "or_rules" in perm:
        return any(_permits(r, path) for r in perm["or_rules"]["rules"])
    return perm["url_path"]["path"]["exact"] == path


def _allows(rbac: dict, path: str, payload: dict) -> bool:
    assert rbac["rules"]["action"] == "ALLOW"
    return any(
        any(_permits(p, path) for p in pol["permissions"])
        and any(_matches(p, payload) for p in pol["principals"])
        for pol in rbac["rules"]["policies"].values()
    )


def _service(name: str, sub: str | None = None) -> dict:
    return {"iss": service_issuer(name), "sub": sub or name, "aud": SERVICE_AUDIENCE}


CUSTOMER = {"iss": DEFAULT_ISSUER, "sub": "u-1", "roles": ["customer"]}
ADMIN = {"iss": DEFAULT_ISSUER, "sub": "u-2", "roles": ["customer", ADMIN_ROLE]}


@pytest.mark.parametrize("which", ["generated", "committed"])
def test_every_protected_method_needs_a_verified_token(api, which) -> None:
    authn = _internal(_configs(api)[which])[JWT_AUTHN]
    providers = authn["providers"]
    assert set(providers) == {jwt.PROVIDER} | {jwt.service_provider(n) for n in SERVICES}
    rules = {r["match"]["path"]: r["requires"] for r in authn["rules"]}
    for m in api.methods:
        if m.access == "public":
            assert m.grpc_path not in rules, m.grpc_path  # like the edge: tokens not read
        else:  # any one provider's token (RBAC then decides whose)
            assert set(rules[m.grpc_path]) == {"requires_any"}, m.grpc_path
            req = rules[m.grpc_path]["requires_any"]["requirements"]
            assert sorted(r["provider_name"] for r in req) == sorted(providers)
    for name in SERVICES:
        p = providers[jwt.service_provider(name)]
        assert p["issuer"] == service_issuer(name) and p["audiences"] == [SERVICE_AUDIENCE]
        # Bound to that service's keys alone: GetServiceJwks for that one service.
        assert p["remote_jwks"]["http_uri"]["uri"].endswith(f"/api/v1/auth/service-jwks/{name}")
        assert p["jwt_cache_config"]["jwt_cache_size"] > 0
    user = providers[jwt.PROVIDER]
    assert (user["issuer"], user["audiences"]) == (DEFAULT_ISSUER, [DEFAULT_AUDIENCE])


@pytest.mark.parametrize("which", ["generated", "committed"])
def test_rbac_admits_exactly_the_named_callers(api, which) -> None:
    rbac = _internal(_configs(api)[which])[RBAC]
    for m in api.methods:
        for name in SERVICES:
            allowed = m.access == "public" or name in m.callers
            assert _allows(rbac, m.grpc_path, _service(name)) is allowed, (m.grpc_path, name)
        assert _allows(rbac, m.grpc_path, CUSTOMER) is (m.access in ("public", "user"))
        assert _allows(rbac, m.grpc_path, ADMIN) is (m.access != "internal"), m.grpc_path
        assert _allows(rbac, m.grpc_path, {}) is (m.access == "public")
    reserve = "/shop.product.v1.ProductService/ReserveStock"
    update = "/shop.product.v1.ProductService/UpdateProduct"
    assert _allows(rbac, reserve, _service("order"))
    for path in (reserve, update):
        assert not _allows(rbac, path, _service("notification"))
    # A token claiming order under notification's issuer (or the reverse) is nobody.
    assert not _allows(rbac, reserve, _service("notification", sub="order"))
    assert not _allows(rbac, reserve, {"iss": service_issuer("order"), "sub": "notification"})
    # Health checks and unknown paths are not this filter's business (routes decide).
    assert _allows(rbac, "/grpc.health.v1.Health/Check", {})


def test_the_issuer_and_audience_come_from_the_options(api) -> None:
    opt = envoy.EnvoyOptions(jwt_issuer="https://login.example", jwt_audience="shop-x")
    cfg = envoy.build(api, opt)
    internal = _internal(cfg)
    (edge,) = [x for x in cfg["static_resources"]["listeners"] if x["name"] == "edge"]
    edge_filters = edge["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    edge_authn = next(f["typed_config"] for f in edge_filters if f["name"] == JWT_AUTHN)
    for providers in (edge_authn["providers"], internal[JWT_AUTHN]["providers"]):
        assert providers[jwt.PROVIDER]["issuer"] == "https://login.example"
        assert providers[jwt.PROVIDER]["audiences"] == ["shop-x"]
    user = {"iss": "https://login.example", "sub": "u-1", "roles": ["customer"]}
    get_user = "/shop.user.v1.UserService/GetUser"
    assert _allows(internal[RBAC], get_user, user)
    assert not _allows(internal[RBAC], get_user, CUSTOMER)  # the default issuer's token


def _with_policy(tmp_path: Path, full_path: str, **fields) -> Path:
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(generate.DESCRIPTOR.read_bytes())
    _, service, method = full_path.split("/")
    for f in fds.file:
        for s in f.service:
            for m in s.method:
                if f"{f.package}.{s.name}" == service and m.name == method:
                    pol = m.options.Extensions[options_pb2.policy]
                    for key, value in fields.items():
                        if key == "callers":
                            del pol.callers[:]
                            pol.callers.extend(value)
                        else:
                            setattr(pol, key, value)
    out = tmp_path / "mutated.binpb"
    out.write_bytes(fds.SerializeToString())
    return out


@pytest.mark.parametrize(
    ("path", "fields", "error"),
    [
        ("/shop.product.v1.ProductService/ReserveStock", {"callers": []}, "must name its callers"),
        ("/shop.product.v1.ProductService/ReserveStock", {"callers": ["orders"]}, "not services"),
        ("/shop.product.v1.ProductService/ReserveStock", {"callers": ["order", "order"]}, "twice"),
        ("/shop.product.v1.ProductService/GetProduct", {"callers": ["order"]}, "public method"),
    ],
)
def test_the_generator_refuses_bad_callers(tmp_path, path, fields, error) -> None:
    with pytest.raises(ApiError, match=error):
        load(_with_policy(tmp_path, path, **fields))


def test_a_caller_added_in_the_schema_is_admitted_everywhere(tmp_path, monkeypatch) -> None:
    path = "/shop.product.v1.ProductService/UpdateProduct"
    # A new caller is declared twice: in the method's policy and in the manifest's calls.
    declared = mesh_api.calls
    monkeypatch.setattr(
        mesh_api,
        "calls",
        lambda name: (*declared(name), "product") if name == "notification" else declared(name),
    )
    api = load(_with_policy(tmp_path, path, callers=["notification"]))
    rbac = _internal(envoy.build(api))[RBAC]
    assert _allows(rbac, path, _service("notification"))
    assert not _allows(rbac, path, _service("order"))
    assert _allows(rbac, path, ADMIN) and not _allows(rbac, path, CUSTOMER)
