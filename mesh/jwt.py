"""Token checks in the mesh, from the schema's policy (access level and callers; owned by the
auth work: mesh/envoy/ and mesh/istio.py call in here and know nothing else about tokens).

The user-token issuer and audience are parameters: the generator's callers pass
services/runtime/auth.py's AuthConfig (SHOPMESH_JWT_ISSUER / _AUDIENCE), the one setting the
auth service issues with. The committed mesh/out is generated with the defaults; the local
stack renders Envoy privately when the environment sets others (stack/gateway.py).

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

Envoy internal listener (service to service):

1. header_mutation: the claims header is stripped here too.
2. jwt_authn: every method that is not public needs a verified token: a user token (the
   edge's provider) or a service token. Each service has its own provider: issuer
   "shopmesh-service/<name>", bound to that service's keys only (remote_jwks of
   GetServiceJwks for that one service), so a token passes only under the name of the
   service whose key signed it. Verified tokens are cached (`jwt_cache_config`): a service
   reuses its token for minutes, so its signature is checked once.
3. rbac, one policy per method, on the verified payload: the services named in the
   method's `policy.callers` (iss and sub), plus, on user and admin methods, user tokens
   (admin methods: with the admin role). Anyone else -> 403 (PERMISSION_DENIED); a bad
   token, or one of a key no service holds -> 401.
"""

from __future__ import annotations

from collections.abc import Sequence

from mesh.api import Api, Method
from services.runtime.auth import (
    ADMIN_ROLE,
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    PAYLOAD_HEADER,
    SERVICE_AUDIENCE,
    SERVICE_ISSUER_PREFIX,
    service_issuer,
)

T = "type.googleapis.com/envoy.extensions."
PROVIDER = "shop_auth"
SERVICE_PROVIDER_PREFIX = "service_"  # + service name: one provider per service identity
JWKS_CLUSTER = "auth_jwks"
JWKS_PATH = "/.well-known/jwks.json"
# AuthService.GetServiceJwks, one service's keys (REST binding of the schema) + "/<name>".
SERVICE_JWKS_PATH = "/api/v1/auth/service-jwks"
JWKS_CACHE_S = 60
METADATA_KEY = "jwt_payload"
JWT_FILTER = "envoy.filters.http.jwt_authn"
RBAC_FILTER = "envoy.filters.http.rbac"

JWT_CACHE_SIZE = 1000  # verified tokens remembered per worker and provider
API_PREFIX = "/api"  # mesh.envoy.API_PREFIX (not imported: envoy imports this module)
# Admin-only edge route answering 200 (mesh/envoy/): NGINX's auth_request for /api/ops/.
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


def _remote_jwks(edge_port: int, path: str) -> dict:
    return {
        "http_uri": {
            "uri": f"http://127.0.0.1:{edge_port}{path}",
            "cluster": JWKS_CLUSTER,
            "timeout": "2s",
        },
        "cache_duration": f"{JWKS_CACHE_S}s",
        "async_fetch": {"failed_refetch_duration": "2s"},
    }


def _user_provider(edge_port: int, issuer: str, audience: str) -> dict:
    return {
        "issuer": issuer,
        "audiences": [audience],
        "remote_jwks": _remote_jwks(edge_port, JWKS_PATH),
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "forward": True,  # the services verify it again (defence in depth)
        "payload_in_metadata": METADATA_KEY,
        "clock_skew_seconds": 30,
    }


def jwt_filter(
    api: Api, edge_port: int, issuer: str = DEFAULT_ISSUER, audience: str = DEFAULT_AUDIENCE
) -> dict:
    rules = [
        {"match": {"path": p}, "requires": {"provider_name": PROVIDER}}
        for access in ("user", "admin")
        for p in _paths(api, access)
    ]
    provider = {
        **_user_provider(edge_port, issuer, audience),
        "forward_payload_header": PAYLOAD_HEADER,
        # A shopper sends the same access token on every call until it expires: its
        # signature is checked once per worker, then only iss, aud and exp (Envoy checks
        # those on a cache hit too).
        "jwt_cache_config": {"jwt_cache_size": JWT_CACHE_SIZE},
    }
    return {
        "name": JWT_FILTER,
        "typed_config": {
            "@type": T + "filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {PROVIDER: provider},
            "rules": rules,
        },
    }


def _path_rule(paths: list[str]) -> dict:
    return {"or_rules": {"rules": [{"url_path": {"path": {"exact": p}}} for p in paths]}}


def _claim_is(claim: str, value: str) -> dict:
    """RBAC principal: the verified token's `claim` equals `value`."""
    return {
        "sourced_metadata": {
            "metadata_matcher": {
                "filter": "envoy.filters.http.jwt_authn",
                "path": [{"key": METADATA_KEY}, {"key": claim}],
                "value": {"string_match": {"exact": value}},
            }
        }
    }


def _has_admin_role() -> dict:
    return {
        "sourced_metadata": {
            "metadata_matcher": {
                "filter": "envoy.filters.http.jwt_authn",
                "path": [{"key": METADATA_KEY}, {"key": "roles"}],
                "value": {"list_match": {"one_of": {"string_match": {"exact": ADMIN_ROLE}}}},
            }
        }
    }


def rbac_filter(api: Api) -> dict | None:
    admin = _paths(api, "admin")
    if not admin:
        return None
    return {
        "name": RBAC_FILTER,
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
                        "principals": [_has_admin_role()],
                    },
                },
            },
        },
    }


def edge_filters(
    api: Api, edge_port: int, issuer: str = DEFAULT_ISSUER, audience: str = DEFAULT_AUDIENCE
) -> list[dict]:
    """The filters that go after the transcoder on the edge listener."""
    rbac = rbac_filter(api)
    return [jwt_filter(api, edge_port, issuer, audience), *([rbac] if rbac else [])]


# ------------------------------------------------------------------ internal listener


def service_provider(name: str) -> str:
    return SERVICE_PROVIDER_PREFIX + name.replace("-", "_")


def caller_principal(name: str) -> dict:
    """RBAC principal: a token verified as service `name`'s (its issuer is bound to its keys
    alone; the subject must say the same)."""
    return {"and_ids": {"ids": [_claim_is("iss", service_issuer(name)), _claim_is("sub", name)]}}


def _method_principals(m: Method, issuer: str) -> list[dict]:
    principals = [caller_principal(c) for c in m.callers]
    if m.access == "user":
        principals.append(_claim_is("iss", issuer))
    elif m.access == "admin":
        principals.append({"and_ids": {"ids": [_claim_is("iss", issuer), _has_admin_role()]}})
    return principals


def _method_policy(m: Method, issuer: str) -> dict:
    return {
        "permissions": [{"url_path": {"path": {"exact": m.grpc_path}}}],
        "principals": _method_principals(m, issuer),
    }


# ------------------------------------------------------------------ per route
#
# Each method's route says which token checks run for it, so a call runs only the checks
# its method needs: a public read skips jwt_authn and RBAC altogether (no rule or policy
# scan, no filter callbacks), a protected internal call meets one requirement and one
# policy instead of the listener's whole lists. The listener-wide rules stay for every
# other route (the 404 catch-all, the deny routes, the files) and decide the same
# (tests/unit/mesh/test_route_authz.py). Envoy skips a filter by the route a request
# matched first: gRPC and gRPC-Web calls match their method's route at once; a REST call
# first matches the catch-all (its /api/v1 path) and so keeps both filters, which then
# decide on its transcoded path as before (tests/integration/auth/test_route_token_checks.py).

DISABLED = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}


def edge_route_filters(m: Method) -> dict[str, dict]:
    """typed_per_filter_config of an edge method route: the listener-wide jwt_authn rules
    name only user and admin paths and RBAC only restricts admin ones, so a public method
    needs neither filter and a user method no RBAC."""
    if m.access == "public":
        return {JWT_FILTER: DISABLED, RBAC_FILTER: DISABLED}
    if m.access == "user":
        return {RBAC_FILTER: DISABLED}
    return {}


def internal_route_filters(m: Method, issuer: str = DEFAULT_ISSUER) -> dict[str, dict]:
    """typed_per_filter_config of an internal method route: none for a public method; for
    a protected one any verified token (its requirement_map entry, `requirement_name`),
    then this method's policy alone."""
    if m.access == "public":
        return {JWT_FILTER: DISABLED, RBAC_FILTER: DISABLED}
    return {
        JWT_FILTER: {
            "@type": T + "filters.http.jwt_authn.v3.PerRouteConfig",
            "requirement_name": requirement_name(m),
        },
        RBAC_FILTER: {
            "@type": T + "filters.http.rbac.v3.RBACPerRoute",
            "rbac": {
                "rules": {"action": "ALLOW", "policies": {m.grpc_path: _method_policy(m, issuer)}}
            },
        },
    }


def requirement_name(m: Method) -> str:
    return m.grpc_path


def _callers_first(m: Method, providers: Sequence[str]) -> dict:
    """Any verified token, the providers its legitimate callers use tried first.

    jwt_authn tries a requires_any's providers in order and stops at the first that
    verifies; each provider it tries before that parses the token again and misses its
    own verified-token cache (the issuer is not its own, so the token never enters it).
    With every provider in one sorted list an order call paid five such misses per call;
    the method's callers (then the user issuer on user and admin methods) first make a
    legitimate call verify at the first try, from the cache. Every provider stays in the
    list, so a token of a service the method does not name still verifies and RBAC
    refuses it (403), exactly as before."""
    first = [service_provider(c) for c in m.callers]
    if m.access in ("user", "admin"):
        first.append(PROVIDER)
    order = first + [p for p in providers if p not in first]
    return {"requires_any": {"requirements": [{"provider_name": p} for p in order]}}


def internal_filters(
    api: Api,
    edge_port: int,
    services: Sequence[str],
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
) -> list[dict]:
    """jwt_authn (user provider + one per service identity in `services`) and per-method
    RBAC for the internal listener."""
    providers = {PROVIDER: {**_user_provider(edge_port, issuer, audience)}}
    for name in sorted(services):
        providers[service_provider(name)] = {
            "issuer": service_issuer(name),
            "audiences": [SERVICE_AUDIENCE],
            "remote_jwks": _remote_jwks(edge_port, f"{SERVICE_JWKS_PATH}/{name}"),
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "forward": True,
            "payload_in_metadata": METADATA_KEY,
            "clock_skew_seconds": 30,
        }
    for provider in providers.values():
        provider["jwt_cache_config"] = {"jwt_cache_size": JWT_CACHE_SIZE}
    any_token = {"requires_any": {"requirements": [{"provider_name": name} for name in providers]}}
    protected = [m for m in api.methods if m.access != "public"]
    # The listener-wide rules and policies decide for a path no method route matches (the
    # 404 catch-all); each method's route carries its own (internal_route_filters).
    rules = [{"match": {"path": m.grpc_path}, "requires": any_token} for m in protected]
    policies: dict[str, dict] = {
        "unprotected": {
            "permissions": [{"not_rule": _path_rule([m.grpc_path for m in protected])}],
            "principals": [{"any": True}],
        }
    }
    for m in protected:
        policies[m.grpc_path] = _method_policy(m, issuer)
    return [
        strip_filter(),
        {
            "name": JWT_FILTER,
            "typed_config": {
                "@type": T + "filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": providers,
                "rules": rules,
                "requirement_map": {
                    requirement_name(m): _callers_first(m, list(providers)) for m in protected
                },
            },
        },
        {
            "name": RBAC_FILTER,
            "typed_config": {
                "@type": T + "filters.http.rbac.v3.RBAC",
                "rules": {"action": "ALLOW", "policies": policies},
            },
        },
    ]


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


# ------------------------------------------------------------------ Istio


def istio_jwt_rule(
    jwks_uri: str, issuer: str = DEFAULT_ISSUER, audience: str = DEFAULT_AUDIENCE
) -> dict:
    """RequestAuthentication rule: same issuer, audience and payload header as the edge."""
    return {
        "issuer": issuer,
        "audiences": [audience],
        "jwksUri": jwks_uri,
        "forwardOriginalToken": True,
        "outputPayloadToHeader": PAYLOAD_HEADER,
    }


def istio_service_jwt_rule(name: str, jwks_uri: str) -> dict:
    """RequestAuthentication rule for one service's tokens (issuer "shopmesh-service/<name>",
    JWKS: that service's keys only). Without it Istio rejects its calls, since a token whose
    issuer no rule names is invalid. No payload header: services verify the token
    themselves and nothing reads it."""
    return {
        "issuer": service_issuer(name),
        "audiences": [SERVICE_AUDIENCE],
        "jwksUri": jwks_uri,
        "forwardOriginalToken": True,
    }


# requestPrincipals of a verified service token are "<iss>/<sub>".
SERVICE_REQUEST_PRINCIPALS = f"{SERVICE_ISSUER_PREFIX}*"


def service_request_principal(name: str) -> str:
    return f"{service_issuer(name)}/{name}"
