"""The AppHost: every process of the local stack, its dependencies and health, on one screen.

Adding a service is one entry, e.g.

    python_service("product", "services.product.main", port=50051,
                   depends_on=["postgres-primary", "postgres-replica"]),

An entry whose Python module does not exist yet is skipped with a message, so `make up`
works while the services are still being written. Order here is display order; start order
comes from depends_on (independent parts start in parallel).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from mesh.services import metrics_port
from stack import ferretdb, frontend, gateway, kafka, postgres
from stack.model import REPO_ROOT, Component, GrpcHealth, HealthCheck, Http, port, state_dir


def _missing_module(module: str) -> str | None:
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    return None if found else f"module {module} not written yet"


def python_process(
    name: str,
    module: str,
    health: HealthCheck,
    depends_on: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    info: str | None = None,
    start_timeout: float = 30,
    post_start: Callable[[], None] | None = None,
) -> Component:
    """Any `python -m module` process of ours (registry, sinks, tools)."""
    fixed_env = dict(env or {})
    return Component(
        name=name,
        command=lambda: [sys.executable, "-m", module, *args],
        health=health,
        depends_on=depends_on,
        env=fixed_env,
        # A changed environment (e.g. a new address in this file) restarts the process on
        # the next `make up`; its code is not digested (restart it by hand while editing).
        config_digest=lambda: json.dumps(sorted(fixed_env.items())),
        skip_reason=lambda: _missing_module(module),
        info=(lambda: info) if info else None,
        start_timeout=start_timeout,
        post_start=post_start,
    )


def python_service(
    name: str,
    module: str,
    port: int,
    depends_on: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    post_start: Callable[[], None] | None = None,
    workers: int = 1,
) -> Component:
    """A grpclib service: healthy when grpc.health.v1 says SERVING on 127.0.0.1:<port>.
    `workers`: its `<NAME>_WORKERS` (processes on the port, services/runtime/workers.py);
    the same variable in the environment of `make up` overrides it."""
    var = f"{name.upper()}_WORKERS"
    env = {
        # /metrics on the port Prometheus scrapes (mesh/out/prometheus/prometheus.yml).
        f"{name.upper()}_METRICS_PORT": str(metrics_port(name)),
        var: os.environ.get(var, str(workers)),
        **(env or {}),
    }
    return python_process(
        name,
        module,
        GrpcHealth(port),
        depends_on,
        env,
        info=f"grpc 127.0.0.1:{port}",
        post_start=post_start,
    )


def demo_data(module: str) -> Callable[[], None]:
    """A post-start step running `python -m <module>` (an idempotent demo-data loader)."""

    def load() -> None:
        done = subprocess.run(
            [sys.executable, "-m", module], cwd=REPO_ROOT, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"{module} failed: {done.stderr.strip() or done.stdout}")

    return load


SMTP_PORT = port("SHOPMESH_SMTP_PORT", 1025)
SMTP_HTTP_PORT = port("SHOPMESH_SMTP_HTTP_PORT", 1080)


def smtp_sink(
    smtp_port: int = SMTP_PORT, http_port: int = SMTP_HTTP_PORT, mail_dir: Path | None = None
) -> Component:
    """The SMTP sink; ports and dir are parameters so tests can run a private instance."""
    return Component(
        name="smtp-sink",
        command=lambda: [
            *(sys.executable, "-m", "stack.smtp_sink"),
            *("--smtp-port", str(smtp_port), "--http-port", str(http_port)),
            *("--dir", str(mail_dir or state_dir() / "mail")),
        ],
        health=Http(f"http://127.0.0.1:{http_port}/health"),
        info=lambda: f"smtp 127.0.0.1:{smtp_port} http://127.0.0.1:{http_port}/messages",
    )


REGISTRY_PORT = port("REGISTRY_PORT", 8085)


def register_schemas() -> None:
    """Register schemas/avro with the registry (idempotent: same schema, same id)."""
    url = f"http://127.0.0.1:{REGISTRY_PORT}"
    done = subprocess.run(
        [sys.executable, "-m", "registry", "--url", url, "register"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"schema registration failed: {done.stderr.strip() or done.stdout}")


PG = ["postgres-primary", "postgres-replica"]

# Service-to-service calls go through Envoy's internal listener (mesh/README.md), so they get
# the mesh's per-method timeouts, retries (idempotent methods only), circuit breakers and
# outlier detection, as in the compose and Istio deployments. One address serves every
# service: the gRPC path picks the cluster. The services' own defaults stay direct, so a
# service run alone (or by a test) needs no Envoy.
MESH_INTERNAL = f"127.0.0.1:{gateway.envoy_internal_port()}"

COMPONENTS: list[Component] = [
    # --- infrastructure
    *postgres.components(),
    *kafka.components(),
    *ferretdb.components(),
    smtp_sink(),
    # --- platform
    python_process(
        "registry",
        "registry.main",
        Http(f"http://127.0.0.1:{REGISTRY_PORT}/"),
        depends_on=["postgres-primary"],
        info=f"http://127.0.0.1:{REGISTRY_PORT}",
        post_start=register_schemas,
    ),
    # --- services
    python_service(
        "auth",
        "services.auth.main",
        50055,
        depends_on=[*PG, "user", "envoy"],
        env={"AUTH_USER_ADDR": MESH_INTERNAL},
    ),
    python_service(
        "user",
        "services.user.main",
        50052,
        depends_on=[*PG, "kafka", "registry"],
        post_start=demo_data("services.user.demo"),  # demo@ / admin@shopmesh.local
    ),
    python_service(
        "product",
        "services.product.main",
        50051,
        depends_on=PG,
        post_start=demo_data("services.product.demo"),  # 60 products, p-0001..p-0060
    ),
    python_service(
        "order",
        "services.order.main",
        50053,
        depends_on=["ferretdb", "kafka", "registry", "user", "product", "envoy"],
        env={"ORDER_PRODUCT_ADDR": MESH_INTERNAL, "ORDER_USER_ADDR": MESH_INTERNAL},
        post_start=ferretdb.twin_indexes_after_start,  # GIN twins of its indexes (FerretDB v1)
    ),
    python_service(
        "notification",
        "services.notification.main",
        50054,
        depends_on=[*PG, "kafka", "registry", "smtp-sink", "user", "envoy"],
        env={"NOTIFICATION_USER_ADDR": MESH_INTERNAL, "NOTIFICATION_ORDER_ADDR": MESH_INTERNAL},
    ),
    # --- edge and observability
    frontend.component(),  # builds frontend/dist (npm ci + vite) when sources changed
    *gateway.components(),
]
