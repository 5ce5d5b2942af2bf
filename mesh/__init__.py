"""Mesh generator: the proto descriptor set -> Envoy, NGINX, Istio and OpenAPI (mesh/out/)."""
