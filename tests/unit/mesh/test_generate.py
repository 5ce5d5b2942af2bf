"""The mesh generator: the committed output is fresh and deterministic, Envoy and NGINX accept
it, and every schema policy (access, idempotent, timeout) shows up where it must."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import descriptor_pb2

import shop.mesh.v1.options_pb2 as options_pb2
from mesh import envoy, generate, istio, nginx, openapi
from mesh.api import ApiError, load
from mesh.services import SERVICES
from mesh.testing import descriptor_with_extra_rpc, validate_envoy
from services.runtime.auth import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    SERVICE_AUDIENCE,
    service_issuer,
)

ROOT = Path(__file__).resolve().parents[3]
OUT = ROOT / "mesh" / "out"
NGINX = Path("/usr/sbin/nginx")


@pytest.fixture(scope="module")
def api():
    return load(generate.DESCRIPTOR)


@pytest.fixture(scope="module")
def envoy_cfg(api) -> dict:
    return yaml.safe_load((OUT / "envoy" / "envoy.yaml").read_text())


def _listener(cfg: dict, name: str) -> dict:
    (lst,) = [x for x in cfg["static_resources"]["listeners"] if x["name"] == name]
    return lst["filter_chains"][0]["filters"][0]["typed_config"]


def _routes(cfg: dict, name: str) -> dict[str, dict]:
    vhost = _listener(cfg, name)["route_config"]["virtual_hosts"][0]
    by_path: dict[str, dict] = {}
    for r in vhost["routes"]:
        if r["name"].startswith("get."):
            continue  # Connect GET guards (mesh/connect.py): only a Connect GET meets them
        key = r["match"].get("path") or r["match"].get("prefix")
        by_path.setdefault(key, r)  # first match wins, as in Envoy
    return by_path


# ------------------------------------------------------------------ freshness, determinism


def test_committed_output_is_fresh(api) -> None:
    files = generate.render(api)
    assert generate.stale(files, OUT) == [], "run `python -m mesh.generate` and commit mesh/out"


def test_render_is_deterministic(api) -> None:
    again = load(generate.DESCRIPTOR)
    assert generate.render(api) == generate.render(again)
    text = (OUT / "envoy" / "envoy.yaml").read_text()
    assert not re.search(r"20\d\d-\d\d-\d\d", text), "no timestamps in generated files"
    assert str(ROOT) not in text, "the committed config must not name this machine's paths"


def test_write_only_touches_changed_files_and_removes_stale(tmp_path, api) -> None:
    files = generate.render(api)
    assert sorted(generate.write(files, tmp_path)) == sorted(files)
    stray = tmp_path / "istio" / "gone.yaml"
    stray.write_text("old")
    assert generate.write(files, tmp_path) == ["istio/gone.yaml"]
    assert not stray.exists()
    assert generate.main(["--out", str(tmp_path), "--check"]) == 0


# ------------------------------------------------------------------ Envoy


def test_envoy_validates_committed_config() -> None:
    result = validate_envoy(OUT / "envoy" / "envoy.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_validate_catches_a_bad_field(tmp_path) -> None:
    # The validation test above is only worth something if Envoy rejects mistakes.
    cfg = yaml.safe_load((OUT / "envoy" / "envoy.yaml").read_text())
    cfg["static_resources"]["clusters"][0]["conect_timeout"] = "1s"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    assert validate_envoy(bad).returncode != 0


def test_edge_routes_follow_policy(api, envoy_cfg) -> None:
    routes = _routes(envoy_cfg, "edge")
    for m in api.methods:
        for path in (m.grpc_path, "/api" + m.grpc_path):
            r = routes[path]
            if m.access == "internal":
                assert "route" not in r, f"{path} must not reach a cluster from the edge"
                assert r["direct_response"]["status"] == 200  # gRPC(-Web) variant first
                headers = {
                    h["header"]["key"]: h["header"]["value"] for h in r["response_headers_to_add"]
                }
                assert headers["grpc-status"] == "7"
                continue
            action = r["route"]
            assert action["cluster"] == m.service.split(".")[1]
            assert action["timeout"] == f"{m.timeout_ms / 1000:g}s"
            if path.startswith("/api/"):
                assert action["prefix_rewrite"] == m.grpc_path
            if m.idempotent:
                rp = action["retry_policy"]
                assert rp["retry_on"] == "unavailable,reset,connect-failure"
                assert rp["num_retries"] == 2
                assert rp["per_try_timeout"]
            else:
                assert "retry_policy" not in action, f"{m.name} is not idempotent"
    assert routes["/"]["direct_response"]["status"] == 404


def test_internal_listener_routes_every_method(api, envoy_cfg) -> None:
    routes = _routes(envoy_cfg, "internal")
    internal = [m for m in api.methods if m.access == "internal"]
    assert internal, "the schemas have internal methods (ReserveStock, CheckCredentials)"
    for m in api.methods:
        action = routes[m.grpc_path]["route"]
        assert action["timeout"] == f"{m.timeout_ms / 1000:g}s"
        assert ("retry_policy" in action) == m.idempotent
    addr = next(x for x in envoy_cfg["static_resources"]["listeners"] if x["name"] == "internal")
    assert addr["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8082}


def test_edge_filters_and_measured_knobs(api, envoy_cfg) -> None:
    hcm = _listener(envoy_cfg, "edge")
    assert hcm["generate_request_id"] is False
    names = [f["name"] for f in hcm["http_filters"]]
    for needed in (
        "envoy.filters.http.cors",
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.grpc_web",
        "envoy.filters.http.grpc_json_transcoder",
    ):
        assert needed in names
    assert names[-1] == "envoy.filters.http.router"
    router = hcm["http_filters"][-1]["typed_config"]
    assert router["suppress_envoy_headers"] is True
    tc = next(f for f in hcm["http_filters"] if f["name"].endswith("grpc_json_transcoder"))
    tc = tc["typed_config"]
    assert tc["convert_grpc_status"] is True
    assert tc["print_options"]["preserve_proto_field_names"] is True
    assert not Path(tc["proto_descriptor"]).is_absolute()
    assert set(tc["services"]) == {s.full_name for s in api.services}
    assert hcm["access_log"][0]["typed_config"]["log_format"]["json_format"]
    assert envoy_cfg["admin"]["address"]["socket_address"]["port_value"] == 9901


def test_one_cluster_per_service_with_resilience(api, envoy_cfg) -> None:
    clusters = {c["name"]: c for c in envoy_cfg["static_resources"]["clusters"]}
    for svc in api.services:
        c = clusters[svc.short]
        ep = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        assert ep["address"]["socket_address"]["port_value"] == svc.port
        opts = c["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        ]
        assert "http2_protocol_options" in opts["explicit_http_config"]
        assert "grpc_health_check" in c["health_checks"][0]
        assert c["circuit_breakers"]["thresholds"][0]["retry_budget"]["budget_percent"]
        assert c["outlier_detection"]["consecutive_gateway_failure"] > 0


def test_service_table_is_the_manifests() -> None:
    from mesh.services import SERVICES
    from topology import topology

    assert {s.name: s.port for s in topology().services} == SERVICES


# ------------------------------------------------------------------ NGINX


def _nginx_t(conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [str(NGINX), "-t", "-p", f"{prefix}/", "-c", str(conf), "-g", f"pid {prefix}/n.pid;"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.skipif(not NGINX.exists(), reason="nginx (Debian) not installed")
def test_nginx_accepts_local_config_as_the_stack_runs_it(tmp_path) -> None:
    # The stack passes `daemon off; pid ...;` with -g: a pid/daemon directive in the file
    # would make NGINX refuse to start ("directive is duplicate").
    result = _nginx_t(OUT / "nginx" / "nginx.conf", tmp_path)
    assert result.returncode == 0, result.stderr


def _self_signed(dir_: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    dir_.mkdir(parents=True)
    (dir_ / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (dir_ / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.mark.skipif(not NGINX.exists(), reason="nginx (Debian) not installed")
def test_nginx_accepts_prod_config(tmp_path) -> None:
    conf_dir = tmp_path / "etc"
    _self_signed(conf_dir / "tls")
    conf = conf_dir / "nginx.conf"
    conf.write_text((OUT / "nginx" / "nginx.prod.conf").read_text())
    result = _nginx_t(conf, tmp_path / "prefix")
    assert result.returncode == 0, result.stderr


def test_nginx_config_has_the_gateway_rules() -> None:
    local = (OUT / "nginx" / "nginx.conf").read_text()
    prod = (OUT / "nginx" / "nginx.prod.conf").read_text()
    code = "\n".join(line.split("#")[0] for line in local.splitlines())
    assert not re.search(r"^\s*(daemon|pid)\s", code, re.M)
    for needed in (
        "listen 127.0.0.1:8080;",
        "limit_req_status 429;",
        "client_max_body_size 1m;",
        "proxy_buffering off;",
        "keepalive_requests 100000;",
        "keepalive 64;",
        "proxy_http_version 1.1;",
        "location = /.well-known/jwks.json",
        "frame-ancestors 'none'",
        "X-Content-Type-Options",
        "Referrer-Policy",
        "escape=json",
        "gzip on;",
    ):
        assert needed in local, needed
    assert "Strict-Transport-Security" not in local
    assert "Strict-Transport-Security" in prod
    assert nginx.render(nginx.NginxOptions()) == local


# ------------------------------------------------------------------ OpenAPI


def test_openapi_covers_every_rest_rule(api) -> None:
    spec = openapi.build(api)
    assert spec["openapi"].startswith("3.")
    for m in api.methods:
        for rule in m.http:
            op = spec["paths"][rule.path][rule.verb]
            assert op["x-grpc-method"] == m.grpc_path
            assert op["security"] == ([] if m.access == "public" else [{"bearerAuth": []}])
            params = {p["name"]: p for p in op.get("parameters", [])}
            for name in rule.path_params:
                assert params[name]["in"] == "path" and params[name]["required"]
            if rule.body == "*":
                body = op["requestBody"]["content"]["application/json"]["schema"]
                assert not set(rule.path_params) & set(body["properties"])
    assert not [m for m in api.methods if m.access == "internal" and m.http]
    products = spec["paths"]["/api/v1/products"]["get"]
    assert {"page_size", "page_token", "category", "min_price.units"} <= {
        p["name"] for p in products["parameters"]
    }
    product = spec["components"]["schemas"]["shop.product.v1.Product"]
    assert "image_urls" in product["properties"], "proto field names, as Envoy prints them"
    assert product["properties"]["create_time"]["format"] == "date-time"


def test_openapi_refs_resolve_and_docs_render(api) -> None:
    spec = openapi.build(api)
    text = generate.dump_json(spec)
    for ref in set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text)):
        assert ref in spec["components"]["schemas"], ref
    html = (OUT / "openapi" / "docs.html").read_text()
    assert "/api/v1/products/{id}" in html and "<script" not in html
    assert "http://" not in html and "https://" not in html, "no CDN or remote assets"


# ------------------------------------------------------------------ Istio


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


# ------------------------------------------------------------------ schema rules


def _mutated(tmp_path: Path, edit) -> Path:
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(generate.DESCRIPTOR.read_bytes())
    edit(fds)
    out = tmp_path / "mutated.binpb"
    out.write_bytes(fds.SerializeToString())
    return out


def _product(fds: descriptor_pb2.FileDescriptorSet) -> descriptor_pb2.FileDescriptorProto:
    return next(f for f in fds.file if f.package == "shop.product.v1")


def test_rpc_without_policy_is_refused(tmp_path) -> None:
    def drop_policy(fds):
        _product(fds).service[0].method[0].options.ClearExtension(options_pb2.policy)

    with pytest.raises(ApiError, match="missing option"):
        load(_mutated(tmp_path, drop_policy))


def test_service_missing_from_the_table_is_refused(tmp_path) -> None:
    def rename(fds):
        _product(fds).package = "shop.warehouse.v1"

    with pytest.raises(ApiError, match=r"schemas/topology\.yaml"):
        load(_mutated(tmp_path, rename))


def test_new_rpc_gets_routes_with_no_hand_written_config(tmp_path) -> None:
    descriptor = descriptor_with_extra_rpc(tmp_path)
    api = load(descriptor)
    out = tmp_path / "out"
    assert generate.main(["--descriptor", str(descriptor), "--out", str(out), "-q"]) == 0
    cfg = yaml.safe_load((out / "envoy" / "envoy.yaml").read_text())
    path = "/shop.product.v1.ProductService/PingCatalog"
    edge = _routes(cfg, "edge")
    assert edge[path]["route"]["timeout"] == "1.5s"
    assert edge["/api" + path]["route"]["prefix_rewrite"] == path
    assert "retry_policy" in edge[path]["route"]
    assert path in _routes(cfg, "internal")
    spec = openapi.build(api)
    assert spec["paths"]["/api/v1/catalog/ping/{name}"]["get"]["x-grpc-method"] == path
    vs = yaml.safe_load_all((out / "istio" / "product.yaml").read_text())
    assert any(
        r["match"] == [{"uri": {"exact": path}}]
        for d in vs
        if d["kind"] == "VirtualService"
        for r in d["spec"]["http"]
        if "match" in r
    )
    # The new output is a valid Envoy config with the new descriptor (absolute paths here).
    opt = envoy.EnvoyOptions(
        descriptor_path=str(out / "envoy" / "descriptor.binpb"),
        openapi_path=str(out / "openapi" / "openapi.json"),
        docs_path=str(out / "openapi" / "docs.html"),
    )
    conf = tmp_path / "check.yaml"
    conf.write_text(generate.dump_yaml(envoy.build(api, opt)))
    result = validate_envoy(conf)
    assert result.returncode == 0, result.stdout + result.stderr
