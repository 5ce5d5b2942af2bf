"""A copy of the repository in a temp dir, changed the way a developer would change the real
one, regenerated with `make gen`'s own steps and run from there: the tests that prove a new
RPC or a new service needs only its schema, manifest entry and code (test_new_rpc.py,
test_new_service.py).

The copy is the committed tree (`git archive HEAD`: what CI checks out, without other
engineers' half-done files), minus frontend/, tests/ and bench/; node_modules and the
protoprint binary are linked, not copied. Everything in it runs with the copy first on
PYTHONPATH, so its services, generators and generated modules shadow the repository's.
Its Envoy and NGINX configs are rendered by the copy's own generator, on private ports.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path
from typing import Any

import yaml

from mesh.testing import PrivateNginx, free_port

ROOT = Path(__file__).resolve().parents[2]
LEFT_OUT = ("frontend", "tests", "bench")


class TreeCopy:
    def __init__(self, where: Path) -> None:
        self.root = where / "tree"
        self.procs: list[subprocess.Popen[bytes]] = []

    # ------------------------------------------------------------------ the copy

    def create(self) -> TreeCopy:
        archive = subprocess.run(
            ["git", "archive", "HEAD", "--", ".", *(f":!{d}" for d in LEFT_OUT)],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        self.root.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(self.root, filter="data")
        (self.root / "node_modules").symlink_to(ROOT / "node_modules")
        (self.root / ".build").mkdir(exist_ok=True)
        (self.root / ".build" / "bin").symlink_to(ROOT / ".build" / "bin")
        return self

    def path(self, rel: str) -> Path:
        return self.root / rel

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def insert_after(self, rel: str, anchor: str, text: str) -> None:
        """Insert `text` after the first line that is `anchor` but for a trailing comment (a
        YAML mapping key, a class line), keeping the rest of the file as it is."""
        lines = self.path(rel).read_text().splitlines(keepends=True)
        at = next((i for i, ln in enumerate(lines) if ln.split("#")[0].rstrip() == anchor), None)
        assert at is not None, f"{rel}: no line {anchor!r}"
        lines.insert(at + 1, text)
        self.path(rel).write_text("".join(lines))

    def free_service_port(self) -> int:
        """A gRPC port the copy's manifest gives nobody (nor its metrics port)."""
        manifest = yaml.safe_load(self.path("schemas/topology.yaml").read_text())
        used = set()
        for svc in manifest["services"].values():
            used |= {svc["port"], svc.get("metrics_port", svc["port"] - 40600)}
        for part in manifest["infrastructure"].values():
            used |= set((part.get("local") or {}).get("ports", {}).values())
        return next(p for p in range(50090, 50200) if p not in used and p - 40600 not in used)

    def add_topic(self, topic: str, records: list[str]) -> None:
        """The topic in schemas/avro/topics.json and the manifest's topics."""
        topics = self.path("schemas/avro/topics.json")
        table = json.loads(topics.read_text())
        table[topic] = records
        topics.write_text(json.dumps(table, indent=2) + "\n")
        self.insert_after(
            "schemas/topology.yaml", "topics:", f"  {topic}: {{partitions: 1, retention_days: 1}}\n"
        )

    # ------------------------------------------------------------------ running it

    def env(self, **extra: str) -> dict[str, str]:
        path = [str(self.root), str(self.root / "gen" / "python")]
        if os.environ.get("PYTHONPATH"):
            path.append(os.environ["PYTHONPATH"])
        return {**os.environ, "PYTHONPATH": os.pathsep.join(path), **extra}

    def generate(self) -> str:
        """`make gen` in the copy: its own tools/gen.py, every step."""
        done = subprocess.run(
            [sys.executable, "tools/gen.py"],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, f"gen failed in the copy:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def python(self, code: str) -> Any:
        """Run `code` with the copy's modules; it prints one JSON value, returned here."""
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def topics_of(self, service: str) -> list[dict[str, Any]]:
        """Every topic the copy's manifest creates for what `service` produces or consumes
        (retry stages and dead-letter topic included), as the stack would create them."""
        return self.python(
            f"""
            import json
            from topology import topology
            t = topology()
            s = t.service({service!r})
            mine = set(s.produces) | set(s.consumes)
            print(json.dumps([
                {{"name": x.name, "partitions": x.partitions, "config": x.config}}
                for x in t.all_topics()
                if x.name in mine or any(x.name.startswith(m + ".") for m in mine)
            ]))
            """
        )

    def envoy_config(self, endpoints: dict[str, list[tuple[str, int]]]) -> tuple[dict, int, int]:
        """The copy's Envoy bootstrap on private ports, from its descriptor set and mesh/out:
        (config, edge port, admin port)."""
        edge, admin = free_port(), free_port()
        out = self.root / "mesh" / "out"
        config = self.python(
            f"""
            import json
            from pathlib import Path
            from mesh import envoy
            from mesh.api import load
            opt = envoy.EnvoyOptions(
                edge_port={edge}, internal_port={free_port()}, admin_port={admin},
                descriptor_path={str(out / "envoy" / "descriptor.binpb")!r},
                openapi_path={str(out / "openapi" / "openapi.json")!r},
                docs_path={str(out / "openapi" / "docs.html")!r},
                endpoints={ {k: [list(e) for e in v] for k, v in endpoints.items()}!r},
                access_log=False,
            )
            print(json.dumps(envoy.build(load(Path("gen/descriptor/shop.binpb")), opt)))
            """
        )
        return config, edge, admin

    def nginx(self, workdir: Path, envoy_port: int) -> PrivateNginx:
        """A private NGINX in front of `envoy_port`, its conf rendered by the copy's mesh/nginx."""
        gateway = PrivateNginx(workdir, envoy_port)
        gateway.conf = self.python(
            f"""
            import json
            from mesh import nginx
            print(json.dumps(nginx.render(nginx.NginxOptions(
                listen="127.0.0.1:{gateway.port}", envoy="127.0.0.1:{envoy_port}",
                status_listen="127.0.0.1:{free_port()}", access_log_buffered=False,
            ))))
            """
        )
        return gateway

    def start(self, module: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
        """`python -m <module>` from the copy, stopped by stop_all()."""
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", module],
                cwd=self.root,
                env=self.env(**env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def wait_serving(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until grpc.health.v1 on 127.0.0.1:`port` says SERVING (within a minute; the process
    must stay up meanwhile)."""
    import asyncio

    from grpclib.client import Channel
    from grpclib.health.v1.health_grpc import HealthStub
    from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited:\n{_tail(log)}")
        channel = Channel("127.0.0.1", port)
        try:
            reply = await asyncio.wait_for(HealthStub(channel).Check(HealthCheckRequest()), 2)
            if reply.status == HealthCheckResponse.SERVING:
                return
        except Exception:  # not listening yet, or not serving
            pass
        finally:
            channel.close()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"service not serving on {port}:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text()[-4000:] if log.exists() else "(no log)"
