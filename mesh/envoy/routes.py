"""Routes: one per method and listener (its cluster, the schema's timeout, retries for
idempotent methods), the edge's denials of internal methods, and the static files.
"""

from __future__ import annotations

from mesh import connect, jwt
from mesh.api import Api, Method, Service
from mesh.envoy.options import API_PREFIX, NUM_RETRIES, RETRY_ON, EnvoyOptions, T, _header


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


def _method_route(
    svc: Service, m: Method, path: str, rewrite: str | None, per_filter: dict[str, dict]
) -> dict:
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
    route = {
        "name": f"{svc.short}.{m.name}{'.api' if rewrite else ''}",
        "match": {"path": path},
        "route": action,
    }
    if per_filter:
        # Token checks of this method only (mesh/jwt.py, "per route").
        route["typed_per_filter_config"] = per_filter
    return route


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
                    routes.append(_method_route(svc, m, path, rewrite, jwt.edge_route_filters(m)))
                else:
                    routes.extend(_deny_routes(m, path))
    routes.append(_not_found())
    return routes


def _internal_routes(api: Api, opt: EnvoyOptions) -> list[dict]:
    routes = [
        _method_route(s, m, m.grpc_path, None, jwt.internal_route_filters(m, opt.jwt_issuer))
        for s in api.services
        for m in s.methods
    ]
    routes.append(_not_found())
    return routes
