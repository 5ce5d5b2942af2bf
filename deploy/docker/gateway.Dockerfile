# syntax=docker/dockerfile:1.7
# Gateway image: the React storefront built with Vite, served by NGINX, which also
# proxies /api (gRPC-Web and REST) to Envoy. Listens on 8080 as an unprivileged user.
#   docker build -f deploy/docker/gateway.Dockerfile -t shopmesh/gateway .

ARG NODE_IMAGE=node:22.12.0-bookworm-slim
ARG NGINX_IMAGE=nginxinc/nginx-unprivileged:1.27.3-alpine
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- build: the frontend imports the generated Connect-ES clients from ../gen/ts.
FROM ${NODE_IMAGE} AS build
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
# gen/ts sits outside the package: its imports (@bufbuild/protobuf...) resolve by walking
# up from /src/gen/ts, so the package's node_modules is linked at /src (in the repo the
# codegen package's node_modules plays that part).
RUN npm ci --no-audit --no-fund --loglevel=error \
 && ln -s /src/frontend/node_modules /src/node_modules
COPY gen/ts /src/gen/ts
COPY frontend/ ./
RUN npm run build

# ---- pictures: the demo products' SVGs, drawn by the project (stdlib only, no downloads).
FROM ${PYTHON_IMAGE} AS pictures
WORKDIR /src
COPY services/product/__init__.py services/product/demo_catalog.py services/product/pictures.py services/product/
RUN python -m services.product.pictures /pictures

# ---- runtime: static files and one server block; no node, no sources.
FROM ${NGINX_IMAGE} AS gateway
COPY deploy/nginx/gateway.conf /etc/nginx/conf.d/default.conf
COPY --from=build /src/frontend/dist /usr/share/nginx/html
COPY --from=pictures /pictures /usr/share/nginx/html/images/products
USER 101:101
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
