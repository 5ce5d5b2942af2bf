"""JWT verification at the edge, from the schema's access levels (owned by the auth work;
mesh/envoy.py and mesh/istio.py call in here and know nothing else about tokens).

Envoy edge chain (after CORS, rate limit, gRPC-Web and the JSON transcoder, so REST and
gRPC-Web requests are matched on their gRPC path):

1. header_mutation (first in the chain, see `strip_filter`): removes any client-sent
   `x-shop-jwt-payload`, so only Envoy can set it.
2. jwt_authn: user and admin methods require a token from the auth service's issuer and
   audience, signed by a key of its JWKS (EdDSA). Public methods have no rule: a token
   there is not examined (the runtime does the same), so a stale token never breaks the
   catalog or RefreshToken. Verified claims go upstream in `x-shop-jwt-payload`
   (base64url JSON, informational: services verify the forwarded token themselves).
   The JWKS is `remote_jwks` fetched from Envoy's own edge listener at
   /.well-known/jwks.json (transcoded to AuthService.GetJwks), refreshed in the background
   (`async_fetch`), retried every 2 s while the auth service is down. The auth service
   publishes a new key before signing with it (AUTH_KEY_PREPUBLISH_S > cache_duration),
   so a rotation never meets a stale cache.
3. rbac: admin methods need "admin" in the token's roles claim (the services check it too).

No token or a bad one -> 401 (gRPC UNAUTHENTICATED); no admin role -> 403
(PERMISSION_DENIED). Internal methods never reach this: the edge routes deny them.
"""

from __future__ import annotations

from mesh.api import Api
from services.runtime.auth import (
    ADMIN_ROLE,
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    PAYLOAD_HEADER,
    SERVICE_AUDIENCE,
    SERVICE_ISSUER,
)

T = "type.googleapis.com/envoy.extensions."
PROVIDER = "shop_auth"
JWKS_CLUSTER = "auth_jwks"
JWKS_PATH = "/.well-known/jwks.json"
JWKS_CACHE_S = 60
METADATA_KEY = "jwt_payload"
API_PREFIX = "/api"  # mesh.envoy.API_PREFIX (not imported: envoy imports this module)
# Admin-only edge route answering 200 (mesh/envoy.py): NGINX's auth_request for /api/ops/.
OPS_AUTHZ_PATH = API_PREFIX + "/ops/authz"


def _paths(api: Api, access: str) -> list[str]:
    """gRPC paths of `access` methods, bare and under /api (gRPC-Web via NGINX)."""
    paths = [
        p
        for m in api.methods
        if m.access == access
        for p in (m.grpc_path, API_PREFIX + m.grpc_path)
    ]
    return [*paths, OPS_AUTHZ_PATH] if access == "admin" else paths


def strip_filter() -> dict:
    return {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": T + "filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": [{"remove": PAYLOAD_HEADER}]},
        },
    }


def jwt_filter(api: Api, edge_port: int) -> dict:
    rules = [
        {"match": {"path": p}, "requires": {"provider_name": PROVIDER}}
        for access in ("user", "admin")
        for p in _paths(api, access)
    ]
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": T + "filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {
                PROVIDER: {
                    "issuer": DEFAULT_ISSUER,
                    "audiences": [DEFAULT_AUDIENCE],
                    "remote_jwks": {
                        "http_uri": {
                            "uri": f"http://127.0.0.1:{edge_port}{JWKS_PATH}",
                            "cluster": JWKS_CLUSTER,
                            "timeout": "2s",
                        },
                        "cache_duration": f"{JWKS_CACHE_S}s",
                        "async_fetch": {"failed_refetch_duration": "2s"},
                    },
                    "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                    "forward": True,  # the services verify it again (defence in depth)
                    "forward_payload_header": PAYLOAD_HEADER,
                    "payload_in_metadata": METADATA_KEY,
                    "clock_skew_seconds": 30,
                }
            },
            "rules": rules,
        },
    }


def _path_rule(paths: list[str]) -> dict:
    return {"or_rules": {"rules": [{"url_path": {"path": {"exact": p}}} for p in paths]}}


def rbac_filter(api: Api) -> dict | None:
    admin = _paths(api, "admin")
    if not admin:
        return None
    has_admin = {
        "sourced_metadata": {
            "metadata_matcher": {
                "filter": "envoy.filters.http.jwt_authn",
                "path": [{"key": METADATA_KEY}, {"key": "roles"}],
                "value": {"list_match": {"one_of": {"string_match": {"exact": ADMIN_ROLE}}}},
            }
        }
    }
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": T + "filters.http.rbac.v3.RBAC",
            "rules": {
                "action": "ALLOW",
                "policies": {
                    "not-admin-methods": {
                        "permissions": [{"not_rule": _path_rule(admin)}],
                        "principals": [{"any": True}],
                    },
                    "admin-methods": {
                        "permissions": [_path_rule(admin)],
                        "principals": [has_admin],
                    },
                },
            },
        },
    }


def edge_filters(api: Api, edge_port: int) -> list[dict]:
    """The filters that go after the transcoder on the edge listener."""
    rbac = rbac_filter(api)
    return [jwt_filter(api, edge_port), *([rbac] if rbac else [])]


def jwks_cluster(edge_port: int) -> dict:
    """remote_jwks fetches from Envoy's own edge listener (REST -> AuthService.GetJwks)."""
    return {
        "name": JWKS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": JWKS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": "127.0.0.1",
                                        "port_value": edge_port,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }


def istio_jwt_rule(jwks_uri: str) -> dict:
    """RequestAuthentication rule: same issuer, audience and payload header as the edge."""
    return {
        "issuer": DEFAULT_ISSUER,
        "audiences": [DEFAULT_AUDIENCE],
        "jwksUri": jwks_uri,
        "forwardOriginalToken": True,
        "outputPayloadToHeader": PAYLOAD_HEADER,
    }


def istio_service_jwt_rule(jwks_uri: str) -> dict:
    """RequestAuthentication rule for service tokens (services/runtime/auth.py): without it
    Istio rejects every internal call, since a token whose issuer no rule names is invalid.
    No payload header: services verify the token themselves and nothing reads it."""
    return {
        "issuer": SERVICE_ISSUER,
        "audiences": [SERVICE_AUDIENCE],
        "jwksUri": jwks_uri,
        "forwardOriginalToken": True,
    }
