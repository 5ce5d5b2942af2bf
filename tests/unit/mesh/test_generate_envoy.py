"""The generated Envoy config: Envoy accepts it, and every schema policy (access, idempotent,
timeout) shows up in the routes, filters and clusters of both listeners.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mesh.services import SERVICES
from mesh.testing import validate_envoy
from tests.unit.mesh.generated_config import OUT, _listener, _routes


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
    from topology import topology

    assert {s.name: s.port for s in topology().services} == SERVICES
