"""What differs between the committed local Envoy config and a test's or a benchmark's
(EnvoyOptions), and the constants the routes and the Istio policies share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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


def _header(key: str, value: str) -> dict:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
