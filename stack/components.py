"""The AppHost: every process of the local stack, its dependencies and health, on one screen.

The services come from the topology manifest (schemas/topology.yaml): adding a service is
one entry there (plus its code). Each becomes a `python -m services.<name>.main` process
healthy when grpc.health.v1 says SERVING on its port, started after what its entry names:
its stores, Kafka and the registry when it produces or consumes, Envoy and the services it
calls (through Envoy's internal listener), the mail catcher when it sends email.

An entry whose Python module does not exist yet is skipped with a message. Order here is
display order; start order comes from depends_on (independent parts start in parallel).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from stack import ferretdb, frontend, gateway, kafka, postgres
from stack.model import REPO_ROOT, Component, GrpcHealth, HealthCheck, Http, port, state_dir
from topology import Service, topology


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
    metrics_port: int = 0,
) -> Component:
    """A grpclib service: healthy when grpc.health.v1 says SERVING on 127.0.0.1:<port>.
    `workers`: its `<NAME>_WORKERS` (processes on the port, services/runtime/workers.py);
    the same variable in the environment of `make up` overrides it."""
    prefix = name.upper().replace("-", "_")
    var = f"{prefix}_WORKERS"
    env = {
        # /metrics on the port Prometheus scrapes (mesh/out/prometheus/prometheus.yml).
        **({f"{prefix}_METRICS_PORT": str(metrics_port)} if metrics_port else {}),
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


MAIL = topology().infra("mail")
SMTP_PORT = port("SHOPMESH_SMTP_PORT", MAIL.port("smtp"))
SMTP_HTTP_PORT = port("SHOPMESH_SMTP_HTTP_PORT", MAIL.port("http"))


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


REGISTRY_PORT = port("REGISTRY_PORT", topology().infra("registry").port("http"))


def register_schemas() -> None:
    """Register schemas/avro with the registry (idempotent: same schema, same id)."""
    url = f"http://127.0.0.1:{REGISTRY_PORT}"
    done = subprocess.run(
        [sys.executable, "-m", "registry", "--url", url, "register"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"schema registration failed: {done.stderr.strip() or done.stdout}")


# Service-to-service calls go through Envoy's internal listener (mesh/README.md), so they get
# the mesh's per-method timeouts, retries (idempotent methods only), circuit breakers and
# outlier detection, as in the compose and Istio deployments. One address serves every
# service: the gRPC path picks the cluster. The services' own defaults stay direct, so a
# service run alone (or by a test) needs no Envoy.
MESH_INTERNAL = f"127.0.0.1:{gateway.envoy_internal_port()}"


def service(s: Service) -> Component:
    """A service of the manifest, started after everything its entry says it uses."""
    deps: list[str] = []
    if s.postgres:
        deps += ["postgres-primary", *(["postgres-replica"] if s.postgres.replica else [])]
    if s.mongo:
        deps.append("ferretdb")
    if s.uses_kafka:
        deps += ["kafka", "registry"]
    if s.smtp:
        deps.append("smtp-sink")
    deps += [*s.calls, *(["envoy"] if s.calls else [])]
    steps = []
    if s.demo:
        steps.append(demo_data(s.demo))
    if s.mongo:  # GIN twins of the indexes the service made (FerretDB v1, stack/README.md)
        steps.append(ferretdb.twin_indexes_after_start)
    return python_service(
        s.name,
        s.module,
        s.port,
        depends_on=deps,
        env={s.env(f"{callee.upper()}_ADDR"): MESH_INTERNAL for callee in s.calls},
        post_start=_in_order(steps) if steps else None,
        workers=s.workers.local,
        metrics_port=s.metrics_port,
    )


def _in_order(steps: Sequence[Callable[[], None]]) -> Callable[[], None]:
    def run() -> None:
        for step in steps:
            step()

    return run


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
    # --- services (schemas/topology.yaml)
    *(service(s) for s in topology().services),
    # --- edge and observability
    frontend.component(),  # builds frontend/dist (npm ci + vite) when sources changed
    *gateway.components(),
]
