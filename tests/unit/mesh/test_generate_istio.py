"""The generated Istio resources follow each method's policy and accept user tokens and each
service's own.
"""

from __future__ import annotations

from mesh import istio
from mesh.services import SERVICES
from services.runtime.auth import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    SERVICE_AUDIENCE,
    service_issuer,
)


def test_istio_resources_follow_policy(api) -> None:
    files = istio.build(api)
    kinds = [d["kind"] for d in files["mesh.yaml"]]
    assert kinds == ["PeerAuthentication", "RequestAuthentication"]
    assert files["mesh.yaml"][0]["spec"]["mtls"]["mode"] == "STRICT"
    for svc in api.services:
        docs = {(d["kind"], d["metadata"]["name"]): d for d in files[f"{svc.short}.yaml"]}
        vs = docs[("VirtualService", svc.short)]
        by_name = {r["name"]: r for r in vs["spec"]["http"]}
        for m in svc.methods:
            r = by_name[m.name]
            assert r["match"] == [{"uri": {"exact": m.grpc_path}}]
            assert r["timeout"] == f"{m.timeout_ms / 1000:g}s"
            assert r["retries"]["attempts"] == (2 if m.idempotent else 0)
        dr = docs[("DestinationRule", svc.short)]["spec"]["trafficPolicy"]
        assert dr["outlierDetection"] and dr["connectionPool"]["http"]
        allow = docs[("AuthorizationPolicy", f"{svc.short}-allow")]["spec"]
        assert allow["action"] == "ALLOW"
        internal = [m.grpc_path for m in svc.methods if m.access == "internal"]
        if internal:
            deny = docs[("AuthorizationPolicy", f"{svc.short}-deny-internal-from-edge")]
            assert deny["spec"]["action"] == "DENY"
            assert deny["spec"]["rules"][0]["to"][0]["operation"]["paths"] == internal
        for rule in allow["rules"]:
            paths = rule["to"][0]["operation"]["paths"]
            access = {m.access for m in svc.methods if m.grpc_path in paths}
            source = rule.get("from", [{}])[0].get("source", {})
            if source.get("principals"):
                # Named callers: each one's own workload and its own verified token.
                (path,) = paths
                (m,) = [m for m in svc.methods if m.grpc_path == path]
                assert [f["source"]["principals"] for f in rule["from"]] == [
                    [f"cluster.local/ns/{istio.NS}/sa/{c}"] for c in m.callers
                ]
                continue
            assert "internal" not in access, "internal methods admit their callers only"
            if access & {"user", "admin"}:
                assert source["requestPrincipals"] == ["*"]
                assert source["notRequestPrincipals"] == ["shopmesh-service/*"]
                assert rule["when"][0]["key"].startswith("request.auth.claims[")


def test_istio_accepts_user_tokens_and_each_services_own(api) -> None:
    files = istio.build(api)
    rules = {r["issuer"]: r for r in files["mesh.yaml"][1]["spec"]["jwtRules"]}
    assert set(rules) == {DEFAULT_ISSUER} | {service_issuer(n) for n in SERVICES}
    assert rules[DEFAULT_ISSUER]["audiences"] == [DEFAULT_AUDIENCE]
    served = {r.path for m in api.methods for r in m.http if m.name == "GetServiceJwks"}
    for name in SERVICES:
        rule = rules[service_issuer(name)]
        assert rule["audiences"] == [SERVICE_AUDIENCE]
        # That service's keys only: GetServiceJwks' REST binding for one service, via the
        # gateway, so one service's key never verifies a token under another's issuer.
        path = rule["jwksUri"].split(".svc.cluster.local", 1)[1]
        assert path == f"/api/v1/auth/service-jwks/{name}"
        assert "/api/v1/auth/service-jwks/{service}" in served
    for svc in api.services:
        allow = next(
            d for d in files[f"{svc.short}.yaml"] if d["metadata"]["name"] == f"{svc.short}-allow"
        )
        admitted = {
            (p, f["source"]["requestPrincipals"][0])
            for r in allow["spec"]["rules"]
            for f in r.get("from", [])
            if f["source"].get("principals")
            for p in r["to"][0]["operation"]["paths"]
        }
        wanted = {(m.grpc_path, f"{service_issuer(c)}/{c}") for m in svc.methods for c in m.callers}
        assert admitted == wanted, svc.short
