"""The token checks each method route carries (mesh/jwt.py edge_route_filters and
internal_route_filters) decide exactly what the listener-wide jwt_authn rules and RBAC
policies decide for that path: every method, both listeners, every kind of caller. The
per-route configs only save work (a public read runs neither filter, a protected internal
call meets one policy), so any difference in who gets through is a bug."""

from __future__ import annotations

import pytest
import yaml

from mesh import envoy, generate, jwt
from mesh.api import Api, load
from mesh.services import SERVICES
from tests.unit.mesh.test_internal_authz import ADMIN, CUSTOMER, _allows, _service

JWT_AUTHN = "envoy.filters.http.jwt_authn"
RBAC = "envoy.filters.http.rbac"
DISABLED = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
CALLERS = {
    **{f"service {n}": _service(n) for n in SERVICES},
    "customer": CUSTOMER,
    "admin": ADMIN,
    "no token": {},
}


@pytest.fixture(scope="module")
def api() -> Api:
    return load(generate.DESCRIPTOR)


def _configs(api: Api) -> dict[str, dict]:
    committed = yaml.safe_load((generate.OUT / "envoy" / "envoy.yaml").read_text())
    return {"generated": envoy.build(api), "committed": committed}


def _listener(cfg: dict, name: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """(filters by name, routes by exact path) of one listener."""
    (lst,) = [x for x in cfg["static_resources"]["listeners"] if x["name"] == name]
    hcm = lst["filter_chains"][0]["filters"][0]["typed_config"]
    filters = {f["name"]: f.get("typed_config", {}) for f in hcm["http_filters"]}
    routes = {}
    for r in hcm["route_config"]["virtual_hosts"][0]["routes"]:
        path = r["match"].get("path")
        # The method route of a path: the one without header matchers (those are the
        # Connect GET guards and the edge's denials of internal methods).
        if path and "route" in r and not r["match"].get("headers"):
            routes[path] = r
    return filters, routes


def _listener_requirement(authn: dict, path: str) -> dict | None:
    for rule in authn.get("rules", []):
        if rule["match"].get("path") == path:
            return rule["requires"]
    return None


def _route_requirement(authn: dict, route: dict, path: str) -> dict | None:
    """What jwt_authn requires on `route`, its per-route config applied."""
    per = route.get("typed_per_filter_config", {}).get(JWT_AUTHN)
    if per is None:
        return _listener_requirement(authn, path)
    if per == DISABLED:
        return None
    return authn["requirement_map"][per["requirement_name"]]


def _providers(requirement: dict | None) -> frozenset[str] | None:
    """Whose token satisfies a requirement (the order a requires_any tries them in changes
    the cost, not the outcome)."""
    if requirement is None:
        return None
    if "provider_name" in requirement:
        return frozenset([requirement["provider_name"]])
    assert set(requirement) == {"requires_any"}, requirement
    return frozenset(r["provider_name"] for r in requirement["requires_any"]["requirements"])


def _route_allows(rbac: dict, route: dict, path: str, payload: dict) -> bool:
    per = route.get("typed_per_filter_config", {}).get(RBAC)
    if per is None:
        return _allows(rbac, path, payload)
    if per == DISABLED:
        return True
    return _allows(per["rbac"], path, payload)


@pytest.mark.parametrize("which", ["generated", "committed"])
@pytest.mark.parametrize("listener", ["edge", "internal"])
def test_route_checks_decide_as_the_listener_wide_ones(api, which, listener) -> None:
    filters, routes = _listener(_configs(api)[which], listener)
    authn, rbac = filters[JWT_AUTHN], filters[RBAC]
    checked = 0
    for m in api.methods:
        if listener == "edge" and not m.edge:
            continue
        paths = (m.grpc_path, "/api" + m.grpc_path) if listener == "edge" else (m.grpc_path,)
        for path in paths:
            route = routes[path]
            want = _providers(_listener_requirement(authn, path))
            assert _providers(_route_requirement(authn, route, path)) == want, (listener, path)
            for who, payload in CALLERS.items():
                got = _route_allows(rbac, route, path, payload)
                assert got is _allows(rbac, path, payload), (listener, path, who)
            checked += 1
    assert checked >= len(api.methods)


@pytest.mark.parametrize("which", ["generated", "committed"])
def test_public_reads_run_no_token_filter(api, which) -> None:
    cfg = _configs(api)[which]
    public = [m for m in api.methods if m.access == "public"]
    assert any(m.name == "GetProduct" for m in public)
    for listener in ("edge", "internal"):
        _, routes = _listener(cfg, listener)
        for m in public:
            paths = [m.grpc_path] + (["/api" + m.grpc_path] if listener == "edge" else [])
            for path in paths:
                per = routes[path]["typed_per_filter_config"]
                assert per[JWT_AUTHN] == DISABLED and per[RBAC] == DISABLED, (listener, path)


@pytest.mark.parametrize("which", ["generated", "committed"])
def test_protected_internal_routes_keep_their_own_checks(api, which) -> None:
    filters, routes = _listener(_configs(api)[which], "internal")
    for m in api.methods:
        if m.access == "public":
            continue
        per = routes[m.grpc_path]["typed_per_filter_config"]
        required = filters[JWT_AUTHN]["requirement_map"][per[JWT_AUTHN]["requirement_name"]]
        tried = [r["provider_name"] for r in required["requires_any"]["requirements"]]
        # The method's legitimate callers are tried first (each provider tried before the
        # one that verifies re-parses the token), every other provider after them.
        first = [jwt.service_provider(c) for c in m.callers]
        first += [jwt.PROVIDER] if m.access in ("user", "admin") else []
        assert tried[: len(first)] == first, (m.grpc_path, tried)
        assert sorted(tried) == sorted(filters[JWT_AUTHN]["providers"]), m.grpc_path
        # One policy: this method's callers, never the listener's catch-all "unprotected".
        assert list(per[RBAC]["rbac"]["rules"]["policies"]) == [m.grpc_path]
    # A path no method route matches still meets the listener-wide lists.
    assert filters[JWT_AUTHN]["rules"] and filters[RBAC]["rules"]["policies"]


@pytest.mark.parametrize("which", ["generated", "committed"])
def test_verified_tokens_are_cached_on_both_listeners(api, which) -> None:
    cfg = _configs(api)[which]
    for listener in ("edge", "internal"):
        filters, _ = _listener(cfg, listener)
        for name, provider in filters[JWT_AUTHN]["providers"].items():
            # Envoy still checks iss, aud and exp on a hit; only the signature is remembered.
            assert provider["jwt_cache_config"]["jwt_cache_size"] > 0, (listener, name)
