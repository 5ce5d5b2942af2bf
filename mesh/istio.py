"""Istio resources for Kubernetes, from the same schema policy as the local Envoy config.

Per service (istio/<service>.yaml): VirtualService (per-method match on the gRPC path,
timeouts, retries only for idempotent methods), DestinationRule (connection pool, outlier
detection, mTLS) and AuthorizationPolicy (public methods open, user/admin methods need a
verified user JWT, and each method admits the services its `policy.callers` names; internal
methods nobody else, and never the edge).
Namespace-wide (istio/mesh.yaml): PeerAuthentication STRICT and RequestAuthentication with
the auth service's user tokens (JWKS: GetJwks) and one rule per service identity: issuer
"shopmesh-service/<name>", JWKS: GetServiceJwks of that service only (the public keys the
auth service publishes from AUTH_SERVICE_PUBLIC_KEYS, so nothing per deployment is committed
here). All JWKS are fetched by istiod through the gateway's REST transcoding.
A caller is admitted as itself twice over: its workload identity (mTLS principal
cluster.local/ns/<ns>/sa/<name>) and its verified service token ("<iss>/<sub>"), both in one
source, so one service's token from another's workload passes neither.
The user issuer here is the default; Kubernetes replaces it with the shopmesh-jwt
ConfigMap's value (k8s/components/istio/kustomization.yaml), as the auth Deployment reads it.
"""

from __future__ import annotations

from mesh import jwt
from mesh.api import Api, Method, Service
from mesh.envoy import NUM_RETRIES, RETRY_ON
from mesh.services import K8S_NAMESPACE, SERVICES

NS = K8S_NAMESPACE
GATEWAY = f"http://gateway.{NS}.svc.cluster.local"
JWKS_URI = GATEWAY + jwt.JWKS_PATH
# AuthService.GetServiceJwks through the gateway (REST binding of the schema), + "/<name>".
SERVICE_JWKS_URI = GATEWAY + jwt.SERVICE_JWKS_PATH
ADMIN_CLAIM = "request.auth.claims[roles]"
# Edge identities: the Istio ingress gateway and our NGINX+Envoy gateway Deployment.
EDGE_PRINCIPALS = [
    "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
    f"cluster.local/ns/{NS}/sa/gateway",
]
HEALTH_PATHS = ["/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"]


def _host(svc: Service) -> str:
    return f"{svc.short}.{NS}.svc.cluster.local"


def _meta(name: str) -> dict:
    return {"name": name, "namespace": NS, "labels": {"app.kubernetes.io/part-of": "shopmesh"}}


def _dur(ms: int) -> str:
    return f"{ms / 1000:g}s"


def _http_route(svc: Service, m: Method) -> dict:
    route = {
        "name": m.name,
        "match": [{"uri": {"exact": m.grpc_path}}],
        "route": [{"destination": {"host": _host(svc), "port": {"number": svc.port}}}],
        "timeout": _dur(m.timeout_ms),
        # Istio retries twice by default: a non-idempotent method must say 0 explicitly.
        "retries": {"attempts": 0},
    }
    if m.idempotent:
        route["retries"] = {
            "attempts": NUM_RETRIES,
            "perTryTimeout": _dur(max(m.timeout_ms // 2, 100)),
            "retryOn": RETRY_ON,
        }
    return route


def virtual_service(svc: Service) -> dict:
    routes = [_http_route(svc, m) for m in svc.methods]
    # Anything else (health checks, reflection): plain route, default timeout, no retries.
    routes.append(
        {
            "name": "default",
            "route": [{"destination": {"host": _host(svc), "port": {"number": svc.port}}}],
            "timeout": "5s",
            "retries": {"attempts": 0},
        }
    )
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": _meta(svc.short),
        "spec": {"hosts": [_host(svc)], "http": routes},
    }


def destination_rule(svc: Service) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": _meta(svc.short),
        "spec": {
            "host": _host(svc),
            "trafficPolicy": {
                "tls": {"mode": "ISTIO_MUTUAL"},
                "connectionPool": {
                    "tcp": {
                        "maxConnections": 1024,
                        "connectTimeout": "1s",
                        "tcpKeepalive": {"time": "60s", "interval": "10s"},
                    },
                    "http": {
                        "http2MaxRequests": 1024,
                        "http1MaxPendingRequests": 1024,
                        "maxRequestsPerConnection": 0,  # never recycle a connection by count
                        "idleTimeout": "300s",
                    },
                },
                "outlierDetection": {
                    "consecutive5xxErrors": 5,
                    "consecutiveGatewayErrors": 3,
                    "interval": "5s",
                    "baseEjectionTime": "15s",
                    "maxEjectionPercent": 50,
                },
            },
        },
    }


def _paths(svc: Service, access: str) -> list[str]:
    return [m.grpc_path for m in svc.methods if m.access == access]


def workload_principal(name: str) -> str:
    """The mTLS identity of service `name`'s pods (its ServiceAccount, k8s/generated/services)."""
    return f"cluster.local/ns/{NS}/sa/{name}"


def caller_source(name: str) -> dict:
    """Service `name` itself: its workload identity AND its verified service token (fields
    of one source are ANDed; separate sources per caller, so callers' halves never mix)."""
    return {
        "source": {
            "principals": [workload_principal(name)],
            "requestPrincipals": [jwt.service_request_principal(name)],
        }
    }


def _user_source() -> dict:
    """Any verified user token: a verified token that is not a service identity's."""
    return {
        "source": {
            "requestPrincipals": ["*"],
            "notRequestPrincipals": [jwt.SERVICE_REQUEST_PRINCIPALS],
        }
    }


def authorization_policies(svc: Service) -> list[dict]:
    selector = {"matchLabels": {"app.kubernetes.io/name": svc.short}}
    rules: list[dict] = [{"to": [{"operation": {"paths": HEALTH_PATHS}}]}]
    if paths := _paths(svc, "public"):
        rules.append({"to": [{"operation": {"paths": paths}}]})
    if paths := _paths(svc, "user"):
        rules.append(
            {
                "from": [_user_source()],
                "to": [{"operation": {"paths": paths}}],
                "when": [{"key": "request.auth.claims[sub]", "values": ["*"]}],
            }
        )
    if paths := _paths(svc, "admin"):
        rules.append(
            {
                "from": [_user_source()],
                "to": [{"operation": {"paths": paths}}],
                "when": [{"key": ADMIN_CLAIM, "values": ["admin"]}],
            }
        )
    # Each method's named callers, on any access level (never on public: mesh/api.py).
    for m in svc.methods:
        if m.callers:
            rules.append(
                {
                    "from": [caller_source(c) for c in m.callers],
                    "to": [{"operation": {"paths": [m.grpc_path]}}],
                }
            )
    internal = _paths(svc, "internal")
    policies = [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": _meta(f"{svc.short}-allow"),
            "spec": {"selector": selector, "action": "ALLOW", "rules": rules},
        }
    ]
    if internal:
        # DENY is evaluated before ALLOW: the edge never reaches an internal method.
        policies.append(
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": _meta(f"{svc.short}-deny-internal-from-edge"),
                "spec": {
                    "selector": selector,
                    "action": "DENY",
                    "rules": [
                        {
                            "from": [{"source": {"principals": EDGE_PRINCIPALS}}],
                            "to": [{"operation": {"paths": internal}}],
                        }
                    ],
                },
            }
        )
    return policies


def mesh_wide() -> list[dict]:
    return [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": _meta("default"),
            "spec": {"mtls": {"mode": "STRICT"}},
        },
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": _meta("jwt"),
            "spec": {
                "jwtRules": [
                    jwt.istio_jwt_rule(JWKS_URI),
                    *(
                        jwt.istio_service_jwt_rule(name, f"{SERVICE_JWKS_URI}/{name}")
                        for name in sorted(SERVICES)
                    ),
                ]
            },
        },
    ]


def build(api: Api) -> dict[str, list[dict]]:
    """File name -> documents."""
    files = {"mesh.yaml": mesh_wide()}
    for svc in api.services:
        files[f"{svc.short}.yaml"] = [
            virtual_service(svc),
            destination_rule(svc),
            *authorization_policies(svc),
        ]
    return files
