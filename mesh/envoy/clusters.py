"""One upstream cluster per service: HTTP/2 to its endpoints, health checks, circuit
breakers and outlier detection.
"""

from __future__ import annotations

from mesh.api import Service
from mesh.envoy.options import EnvoyOptions, T
from mesh.envoy.routes import _cluster_name, _dur


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
