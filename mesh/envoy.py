"""Envoy bootstrap (static resources) for the local mesh.

Two listeners share one cluster per service:

- edge (127.0.0.1:8081): what NGINX talks to. CORS, gRPC-Web, JSON transcoding (REST under
  /api/v1 from the google.api.http rules), a local token-bucket rate limit, JSON access
  logs. Routes only methods whose access is not ACCESS_INTERNAL; internal ones are denied.
- internal (127.0.0.1:8082): service-to-service gRPC. Routes every method, internal ones
  included, with the same timeouts and retries. A client points at it for any service
  (e.g. ORDER_PRODUCT_ADDR=127.0.0.1:8082): the gRPC path /<package>.<Service>/<Method> picks the
  cluster, so one address serves all services. Who may call what is checked here too
  (mesh/jwt.py): a verified token, and for a service token its name in the method's callers.

Measured knobs (shared/measurements/mesh-overhead.md): generate_request_id false and
suppress_envoy_headers true (the pure-Python HTTP/2 server pays for every extra header),
HTTP/2 upstream connections kept alive and never recycled by request count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mesh import connect, edge_errors, jwt
from mesh.api import Api, Method, Service
from mesh.services import SERVICES
from services.runtime.auth import DEFAULT_AUDIENCE, DEFAULT_ISSUER

T = "type.googleapis.com/envoy.extensions."
HCM = T + "filters.network.http_connection_manager.v3.HttpConnectionManager"
RETRY_ON = "unavailable,reset,connect-failure"
NUM_RETRIES = 2
# The edge prefix under which NGINX forwards gRPC-Web (and REST, which keeps it).
API_PREFIX = "/api"


@dataclass(frozen=True)
class EnvoyOptions:
    """Everything that differs between the committed local config and a test/bench one."""

    edge_port: int = 8081
    internal_port: int = 8082
    admin_port: int = 9901
    # Paths are relative to Envoy's working directory (the repo root: the stack starts Envoy
    # there), so the committed file is the same on every machine.
    descriptor_path: str = "mesh/out/envoy/descriptor.binpb"
    openapi_path: str = "mesh/out/openapi/openapi.json"
    docs_path: str = "mesh/out/openapi/docs.html"
    # service short name -> upstream (host, port) list; default: 127.0.0.1:<table port>
    endpoints: Mapping[str, Sequence[tuple[str, int]]] = field(default_factory=dict)
    # Edge token bucket: requests per second (and burst); 0 turns the limit off.
    rate_limit_rps: int = 2000
    rate_limit_burst: int = 4000
    health_check_interval_s: float = 5.0
    access_log: bool = True
    # User tokens' iss and aud: services/runtime/auth.py AuthConfig (SHOPMESH_JWT_ISSUER /
    # _AUDIENCE), which the auth service issues with; the committed config has the defaults.
    jwt_issuer: str = DEFAULT_ISSUER
    jwt_audience: str = DEFAULT_AUDIENCE


def _dur(ms: int) -> str:
    return f"{ms / 1000:g}s"


def _cluster_name(svc: Service) -> str:
    return svc.short


def _retry_policy(m: Method) -> dict:
    # Half the deadline per try: a slow first try still gets real time, and a retry after a
    # reset or refused connection still fits inside the route timeout.
    return {
        "retry_on": RETRY_ON,
        "num_retries": NUM_RETRIES,
        "per_try_timeout": _dur(max(m.timeout_ms // 2, 100)),
        "retry_back_off": {"base_interval": "0.025s", "max_interval": "0.25s"},
        # A retry goes to another instance when there is one.
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    "@type": T + "retry.host.previous_hosts.v3.PreviousHostsPredicate"
                },
            }
        ],
        "host_selection_retry_max_attempts": 3,
    }


def _method_route(svc: Service, m: Method, path: str, rewrite: str | None) -> dict:
    action: dict = {
        "cluster": _cluster_name(svc),
        "timeout": _dur(m.timeout_ms),
        # A client deadline (grpc-timeout) may shorten the route timeout, never extend it.
        "max_stream_duration": {"grpc_timeout_header_max": _dur(m.timeout_ms)},
    }
    if rewrite is not None:
        action["prefix_rewrite"] = rewrite
    if m.idempotent:
        action["retry_policy"] = _retry_policy(m)
    return {
        "name": f"{svc.short}.{m.name}{'.api' if rewrite else ''}",
        "match": {"path": path},
        "route": action,
    }


def _deny_routes(m: Method, path: str) -> list[dict]:
    """An internal method called at the edge: PERMISSION_DENIED for gRPC(-Web) and Connect
    (the bridge writes the gRPC status as a Connect error), 404 otherwise."""
    grpc = {"headers": [{"name": "content-type", "string_match": {"prefix": "application/grpc"}}]}
    suffix = ".api" if path.startswith(API_PREFIX) else ""
    denied = {
        "direct_response": {"status": 200},
        "response_headers_to_add": [
            _header("content-type", "application/grpc"),
            _header("grpc-status", "7"),
            _header("grpc-message", "internal method: not callable from the edge"),
        ],
    }
    routes = [
        {
            "name": f"deny.{m.service}.{m.name}{kind}{suffix}",
            "match": {"path": path, **match},
            **denied,
        }
        for kind, match in (
            ("", grpc),
            *(
                (f".connect{i}" if i else ".connect", match)
                for i, match in enumerate(connect.deny_matches())
            ),
        )
    ]
    routes.append(
        {
            "name": f"deny.{m.service}.{m.name}.http{suffix}",
            "match": {"path": path},
            "direct_response": {"status": 404, "body": {"inline_string": "not found"}},
        }
    )
    return routes


def _header(key: str, value: str) -> dict:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def _not_found() -> dict:
    # Catch-all: unknown paths get a 404 (JSON for REST and Connect from the local-reply
    # mappers; gRPC clients read it as UNIMPLEMENTED). It also gives CORS a route to answer
    # preflights for REST paths the transcoder maps later.
    return {
        "name": "not_found",
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": "no such API path"}},
    }


def _file_route(name: str, path: str, filename: str, content_type: str) -> dict:
    return {
        "name": name,
        "match": {"path": path, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        "direct_response": {"status": 200, "body": {"filename": filename}},
        "response_headers_to_add": [
            _header("content-type", content_type),
            _header("cache-control", "no-cache"),
        ],
    }


def _edge_routes(api: Api, opt: EnvoyOptions) -> list[dict]:
    routes = [
        connect.json_route(_transcoder(api, opt)),
        _file_route("openapi", f"{API_PREFIX}/openapi.json", opt.openapi_path, "application/json"),
        _file_route("docs", f"{API_PREFIX}/docs", opt.docs_path, "text/html; charset=utf-8"),
        # NGINX's auth_request for the ops page's Prometheus proxy: jwt_authn + RBAC (admin
        # role, mesh/jwt.py) decide; reaching the route means allowed.
        {
            "name": "ops-authz",
            "match": {"path": jwt.OPS_AUTHZ_PATH},
            "direct_response": {"status": 200},
        },
    ]
    for svc in api.services:
        for m in svc.methods:
            for path in (m.grpc_path, API_PREFIX + m.grpc_path):
                if m.edge:
                    rewrite = m.grpc_path if path != m.grpc_path else None
                    if not connect.get_allowed(m):
                        name = f"get.{svc.short}.{m.name}{'.api' if rewrite else ''}"
                        routes.extend(connect.get_guard_routes(m, path, name))
                    routes.append(_method_route(svc, m, path, rewrite))
                else:
                    routes.extend(_deny_routes(m, path))
    routes.append(_not_found())
    return routes


def _internal_routes(api: Api) -> list[dict]:
    routes = [_method_route(s, m, m.grpc_path, None) for s in api.services for m in s.methods]
    routes.append(_not_found())
    return routes


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


def _transcoder(api: Api, opt: EnvoyOptions) -> dict:
    """REST <-> gRPC (JSON transcoding of the google.api.http rules)."""
    return {
        "@type": T + "filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        "proto_descriptor": opt.descriptor_path,
        # Every service: Connect JSON reaches methods without a REST path too.
        "services": sorted(s.full_name for s in api.services),
        "convert_grpc_status": True,
        "ignore_unknown_query_parameters": True,
        "print_options": {
            "preserve_proto_field_names": True,
            # Zero stock and empty lists are data for a shop UI, not "unset".
            "always_print_primitive_fields": True,
            "always_print_enums_as_ints": False,
            "add_whitespace": False,
        },
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


def _cluster(svc: Service, opt: EnvoyOptions) -> dict:
    hosts = opt.endpoints.get(svc.short) or [("127.0.0.1", svc.port)]
    hc = _dur(int(opt.health_check_interval_s * 1000))
    return {
        "name": _cluster_name(svc),
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": T + "upstreams.http.v3.HttpProtocolOptions",
                # Keep upstream connections open: no idle recycling for 5 min, no limit on
                # requests per connection, HTTP/2 PINGs detect a dead peer.
                "common_http_protocol_options": {"idle_timeout": "300s"},
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "30s", "timeout": "5s"}
                    }
                },
            }
        },
        "upstream_connection_options": {"tcp_keepalive": {"keepalive_time": 60}},
        "load_assignment": {
            "cluster_name": _cluster_name(svc),
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": h, "port_value": p}}
                            }
                        }
                        for h, p in hosts
                    ]
                }
            ],
        },
        "health_checks": [
            {
                "timeout": "1s",
                "interval": hc,
                "no_traffic_interval": hc,
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "grpc_health_check": {},
            }
        ],
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "max_connections": 1024,
                    "max_pending_requests": 1024,
                    "max_requests": 1024,
                    # Retries may add at most 20% to the active requests (at least 3 in flight).
                    "retry_budget": {
                        "budget_percent": {"value": 20.0},
                        "min_retry_concurrency": 3,
                    },
                }
            ]
        },
        "outlier_detection": {
            "consecutive_5xx": 5,
            "consecutive_gateway_failure": 3,
            "enforcing_consecutive_gateway_failure": 100,
            "interval": "5s",
            "base_ejection_time": "15s",
            "max_ejection_percent": 50,
        },
    }


def build(api: Api, opt: EnvoyOptions | None = None) -> dict:
    """The Envoy bootstrap as a plain dict (serialised by mesh.generate)."""
    opt = opt or EnvoyOptions()
    edge = _hcm(
        "edge",
        _edge_routes(api, opt),
        # JWT checks (mesh/jwt.py): strip the client's claims header first, verify after
        # the transcoder so REST calls are matched on their gRPC path.
        [
            jwt.strip_filter(),
            *_edge_filters(api, opt),
            *jwt.edge_filters(api, opt.edge_port, opt.jwt_issuer, opt.jwt_audience),
        ],
        opt,
        typed_per_filter_config={"envoy.filters.http.cors": CORS_POLICY},
    )
    # NGINX is the one trusted hop in front of the edge: take the client from its XFF.
    edge["typed_config"].update({"use_remote_address": True, "xff_num_trusted_hops": 1})
    internal = _hcm(
        "internal",
        _internal_routes(api),
        jwt.internal_filters(
            api, opt.edge_port, sorted(SERVICES), opt.jwt_issuer, opt.jwt_audience
        ),
        opt,
    )
    return {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": opt.admin_port}}
        },
        "static_resources": {
            "listeners": [
                _listener("edge", opt.edge_port, edge),
                _listener("internal", opt.internal_port, internal),
            ],
            "clusters": [
                *(_cluster(s, opt) for s in api.services),
                jwt.jwks_cluster(opt.edge_port),
            ],
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": T
                        + "resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": 10000,
                    },
                }
            ]
        },
    }
