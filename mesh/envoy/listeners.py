"""The HTTP connection managers of the two listeners and their filters: access logs, CORS,
gRPC-Web, JSON transcoding, the edge's rate limit, JWT checks and the router.
"""

from __future__ import annotations

from mesh import connect, edge_errors
from mesh.api import Api
from mesh.envoy.options import HCM, EnvoyOptions, T, _header
from mesh.envoy.routes import _transcoder


def _access_log(name: str) -> list[dict]:
    fmt = {
        "time": "%START_TIME%",
        "listener": name,
        "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "route": "%ROUTE_NAME%",
        "status": "%RESPONSE_CODE%",
        "grpc_status": "%GRPC_STATUS_NUMBER%",
        "flags": "%RESPONSE_FLAGS%",
        "duration_ms": "%DURATION%",
        "upstream_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
        "upstream": "%UPSTREAM_HOST%",
        "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
        "bytes_in": "%BYTES_RECEIVED%",
        "bytes_out": "%BYTES_SENT%",
        "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        "traceparent": "%REQ(TRACEPARENT)%",
    }
    return [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                "@type": T + "access_loggers.stream.v3.StdoutAccessLog",
                "log_format": {"json_format": fmt},
            },
        }
    ]


def _router() -> dict:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": T + "filters.http.router.v3.Router",
            "suppress_envoy_headers": True,
        },
    }


def _hcm(name: str, routes: list[dict], filters: list[dict], opt: EnvoyOptions, **extra) -> dict:
    cfg = {
        "@type": HCM,
        "stat_prefix": name,
        "codec_type": "AUTO",  # HTTP/1.1 from NGINX, h2c prior knowledge from gRPC clients
        "generate_request_id": False,
        "common_http_protocol_options": {"idle_timeout": "300s"},
        "route_config": {
            "name": name,
            # openapi.json is larger than the 4 KiB default for direct responses.
            "max_direct_response_body_size_bytes": 4 * 1024 * 1024,
            "virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes, **extra}],
        },
        "http_filters": [*filters, _router()],
    }
    if opt.access_log:
        cfg["access_log"] = _access_log(name)
    if name == "edge":
        # Envoy's own replies (no token, rate limit, transcoder 400, upstream down) in the
        # protocol's error shape: mesh/edge_errors.py.
        cfg["local_reply_config"] = edge_errors.local_reply_config()
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": cfg,
    }


def _listener(name: str, port: int, hcm: dict) -> dict:
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [hcm]}],
    }


def _rate_limit(opt: EnvoyOptions) -> list[dict]:
    if opt.rate_limit_rps <= 0:
        return []
    percent = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    return [
        {
            "name": "envoy.filters.http.local_ratelimit",
            "typed_config": {
                "@type": T + "filters.http.local_ratelimit.v3.LocalRateLimit",
                "stat_prefix": "edge_rate_limit",
                "token_bucket": {
                    "max_tokens": opt.rate_limit_burst,
                    "tokens_per_fill": opt.rate_limit_rps,
                    "fill_interval": "1s",
                },
                "filter_enabled": {"runtime_key": "edge_rl_enabled", **percent},
                "filter_enforced": {"runtime_key": "edge_rl_enforced", **percent},
                "rate_limited_as_resource_exhausted": True,
                "response_headers_to_add": [_header("x-rate-limited", "envoy")],
            },
        }
    ]


def _edge_filters(api: Api, opt: EnvoyOptions) -> list[dict]:
    # The protocol filters (gRPC-Web, Connect) come before the rate limit, so that its 429
    # reaches their clients in their own error shape; it still decides on the headers,
    # before any body is buffered.
    return [
        connect.marker_filter(),
        {
            "name": "envoy.filters.http.cors",
            "typed_config": {"@type": T + "filters.http.cors.v3.Cors"},
        },
        {
            "name": "envoy.filters.http.grpc_web",
            "typed_config": {"@type": T + "filters.http.grpc_web.v3.GrpcWeb"},
        },
        connect.bridge_filter(),
        *_rate_limit(opt),
        connect.unframe_filter(),
        {"name": connect.TRANSCODER, "typed_config": _transcoder(api, opt)},
    ]


CORS_POLICY = {
    "@type": T + "filters.http.cors.v3.CorsPolicy",
    # Same-origin through NGINX needs no CORS; this admits local dev servers (Vite).
    "allow_origin_string_match": [
        {"safe_regex": {"regex": r"^https?://(localhost|127\.0\.0\.1)(:[0-9]+)?$"}}
    ],
    "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "allow_headers": (
        "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout,"
        "connect-protocol-version,connect-timeout-ms,traceparent"
    ),
    "expose_headers": "grpc-status,grpc-message,grpc-status-details-bin",
    "max_age": "86400",
}
