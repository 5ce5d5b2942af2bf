"""Gateway sides for a same-run A/B of the generated edge config (bench/mesh_overhead.py).

A side is one generated mesh/out (the working tree's, a git revision's, or any directory
laid out like it) run as a private Envoy + NGINX on spare loopback ports. Every file is
used as generated; only what must differ on a shared machine is rewritten, the same way
for every side:

- ports: Envoy's edge, internal and admin listeners (and the JWKS fetch from its own edge),
  NGINX's listener, its upstream Envoy and its stub_status listener;
- the product cluster's endpoints: the benchmark's upstream;
- the rate-limit numbers (Envoy's token bucket, NGINX's per-address rate): raised so that
  one loopback client is not limited, the filters still run on every request;
- `mesh/out/...` paths (descriptor, OpenAPI files): the side's own copies.

Each process's CPU is read from /proc (`cpu_ns`: the summed schedstat run time of every
thread, ns resolution) so a round can say what Envoy and NGINX spent per request.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mesh.services import SERVICES
from mesh.testing import PrivateEnvoy, free_port

ROOT = Path(__file__).resolve().parent.parent
NGINX_BIN = "/usr/sbin/nginx"
# What a side needs of mesh/out (relative to it).
FILES = (
    "envoy/envoy.yaml",
    "envoy/descriptor.binpb",
    "nginx/nginx.conf",
    "openapi/openapi.json",
    "openapi/docs.html",
)
# The committed config's addresses (mesh/envoy/ EnvoyOptions, mesh/nginx.py NginxOptions).
ENVOY_EDGE, ENVOY_INTERNAL, ENVOY_ADMIN = 8081, 8082, 9901
NGINX_LISTEN, NGINX_STATUS = 8080, 8088
UNLIMITED = 1_000_000


class SideError(RuntimeError):
    pass


# ------------------------------------------------------------------ where a side comes from


def _git(*args: str) -> bytes:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=False)
    if proc.returncode != 0:
        raise SideError(f"git {' '.join(args)}: {proc.stderr.decode().strip()}")
    return proc.stdout


def describe(source: str) -> str:
    """What a side's source is, for the results: a commit, or the working tree's state."""
    if source.startswith("git:"):
        return (
            "mesh/out at "
            + _git("rev-parse", "--short", f"{source[4:]}^{{commit}}").decode().strip()
        )
    src = (ROOT / source).resolve()
    if src == (ROOT / "mesh" / "out").resolve():
        head = _git("rev-parse", "--short", "HEAD").decode().strip()
        dirty = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", "mesh/out"], cwd=ROOT, check=False
        ).returncode
        return f"working tree mesh/out ({'uncommitted changes on ' if dirty else ''}{head})"
    return str(source)


def materialize(source: str, dest: Path) -> None:
    """Copy a side's generated files to `dest`.

    `git:REV` reads REV's committed mesh/out; anything else is a directory laid out like
    mesh/out (`mesh/out` itself: the working tree's generated config)."""
    dest.mkdir(parents=True, exist_ok=True)
    if source.startswith("git:"):
        sha = _git("rev-parse", f"{source[4:]}^{{commit}}").decode().strip()
        for rel in FILES:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(_git("show", f"{sha}:mesh/out/{rel}"))
        return
    src = (ROOT / source).resolve()
    for rel in FILES:
        if not (src / rel).exists():
            raise SideError(f"{src / rel} missing: not a generated mesh/out")
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dest / rel)


# ------------------------------------------------------------------ rewriting


@dataclass(frozen=True)
class Ports:
    edge: int = field(default_factory=free_port)
    internal: int = field(default_factory=free_port)
    admin: int = field(default_factory=free_port)
    nginx: int = field(default_factory=free_port)
    nginx_status: int = field(default_factory=free_port)


def _walk(node: Any, fn: Any) -> Any:
    if isinstance(node, dict):
        fn(node)
        for v in node.values():
            _walk(v, fn)
    elif isinstance(node, list):
        for v in node:
            _walk(v, fn)
    return node


def _replace_strings(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {k: _replace_strings(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_strings(v, old, new) for v in node]
    if isinstance(node, str):
        return node.replace(old, new)
    return node


def rewrite_envoy(cfg: dict, ports: Ports, upstream: list[tuple[str, int]], files: Path) -> dict:
    """The side's Envoy bootstrap on `ports`, product traffic to `upstream`."""
    cfg = _replace_strings(cfg, "mesh/out/", f"{files}/")
    cfg = _replace_strings(cfg, f"127.0.0.1:{ENVOY_EDGE}", f"127.0.0.1:{ports.edge}")
    listener_ports = {"edge": ports.edge, "internal": ports.internal}
    cfg["admin"]["address"]["socket_address"]["port_value"] = ports.admin
    for listener in cfg["static_resources"]["listeners"]:
        if listener["name"] not in listener_ports:
            raise SideError(f"unknown listener {listener['name']!r}: teach bench/mesh_sides.py")
        listener["address"]["socket_address"]["port_value"] = listener_ports[listener["name"]]
    product = SERVICES["product"]
    for cluster in cfg["static_resources"]["clusters"]:
        hosts = [
            e["endpoint"]["address"]["socket_address"]
            for group in cluster["load_assignment"]["endpoints"]
            for e in group["lb_endpoints"]
        ]
        ports_of = {h["port_value"] for h in hosts}
        if cluster["name"] == "product" or product in ports_of:
            cluster["load_assignment"]["endpoints"] = [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": h, "port_value": p}}
                            }
                        }
                        for h, p in upstream
                    ]
                }
            ]
        elif ENVOY_EDGE in ports_of:  # the JWKS fetch from its own edge listener
            for h in hosts:
                h["port_value"] = ports.edge

    def unlimit(node: dict) -> None:
        if "token_bucket" in node and "stat_prefix" in node:
            node["token_bucket"]["max_tokens"] = UNLIMITED
            node["token_bucket"]["tokens_per_fill"] = UNLIMITED

    _walk(cfg, unlimit)
    left = []

    def check(node: dict) -> None:
        if node.get("port_value") in (ENVOY_EDGE, ENVOY_INTERNAL, ENVOY_ADMIN):
            left.append(node)

    _walk(cfg, check)
    if left:
        raise SideError(f"committed ports left in the side's Envoy config: {left}")
    return cfg


def rewrite_nginx(text: str, ports: Ports) -> str:
    """The side's nginx.conf on `ports` (its upstream: the side's Envoy edge)."""
    subs = [
        (rf"listen 127\.0\.0\.1:{NGINX_LISTEN};", f"listen 127.0.0.1:{ports.nginx};"),
        (rf"listen 127\.0\.0\.1:{NGINX_STATUS};", f"listen 127.0.0.1:{ports.nginx_status};"),
        (rf"server 127\.0\.0\.1:{ENVOY_EDGE}\b", f"server 127.0.0.1:{ports.edge}"),
        (r"rate=\d+r/s", f"rate={UNLIMITED}r/s"),
    ]
    for pattern, new in subs:
        text, n = re.subn(pattern, new, text)
        if n == 0:
            raise SideError(f"{pattern!r} not in the side's nginx.conf: teach bench/mesh_sides.py")
    return text


# ------------------------------------------------------------------ processes and CPU


def cpu_ns(pid: int) -> int:
    """On-CPU time of every thread of `pid` (schedstat, ns)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total


def children(pid: int) -> list[int]:
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        with contextlib.suppress(OSError):
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


def tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += children(p)
    return pids


def pin_all_threads(pid: int, cpu: int | None) -> None:
    """Pin every thread of a running process (Envoy starts its workers before we see it)."""
    if cpu is None or (os.cpu_count() or 1) < 2:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), {cpu})


@dataclass
class Gateway:
    """One side's Envoy + NGINX, running."""

    name: str
    source: str
    ports: Ports
    envoy: PrivateEnvoy
    nginx: subprocess.Popen[bytes]
    envoy_concurrency: int

    @property
    def edge_port(self) -> int:
        return self.ports.edge

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.nginx}"

    def cpu(self) -> dict[str, int]:
        assert self.envoy.proc is not None
        return {
            "envoy": cpu_ns(self.envoy.proc.pid),
            "nginx": sum(cpu_ns(p) for p in tree(self.nginx.pid)),
        }

    def stop(self) -> None:
        if self.nginx.poll() is None:
            self.nginx.terminate()
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
        self.envoy.__exit__()


def start_gateway(
    name: str,
    source: str,
    work: Path,
    upstream: list[tuple[str, int]],
    cpu: int | None,
    envoy_concurrency: int = 1,
) -> Gateway:
    """Materialize `source` under work/name and start its Envoy and NGINX (pinned to `cpu`)."""
    files = work / name / "files"
    materialize(source, files)
    ports = Ports()
    cfg = yaml.safe_load((files / "envoy" / "envoy.yaml").read_text())
    cfg = rewrite_envoy(cfg, ports, upstream, files)
    envoy = PrivateEnvoy(cfg, work / name / "envoy", ports.admin, concurrency=envoy_concurrency)
    envoy.__enter__()
    assert envoy.proc is not None
    pin_all_threads(envoy.proc.pid, cpu)
    prefix = work / name / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    (prefix / "html").mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(rewrite_nginx((files / "nginx" / "nginx.conf").read_text(), ports))
    pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    try:
        nginx = subprocess.Popen(
            [NGINX_BIN, "-p", f"{prefix}/", "-c", str(conf),
             "-g", f"daemon off; pid {prefix / 'nginx.pid'};"],
            preexec_fn=pre, stderr=(prefix / "logs" / "stderr.log").open("wb"),
        )  # fmt: skip
    except Exception:
        envoy.__exit__()
        raise
    return Gateway(name, describe(source), ports, envoy, nginx, envoy_concurrency)
