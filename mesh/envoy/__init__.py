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

Modules: options.py (EnvoyOptions, shared constants), routes.py, listeners.py (connection
managers and filters), clusters.py; build() here puts them together.
"""

from __future__ import annotations

from mesh import jwt
from mesh.api import Api
from mesh.envoy.clusters import _cluster
from mesh.envoy.listeners import CORS_POLICY, _edge_filters, _hcm, _listener
from mesh.envoy.options import API_PREFIX, HCM, NUM_RETRIES, RETRY_ON, EnvoyOptions, T
from mesh.envoy.routes import _edge_routes, _internal_routes
from mesh.services import SERVICES


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
        _internal_routes(api, opt),
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


__all__ = ["API_PREFIX", "HCM", "NUM_RETRIES", "RETRY_ON", "EnvoyOptions", "T", "build"]
