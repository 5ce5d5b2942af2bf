"""Regenerate everything derived from the schemas (`make gen`).

1. vendor third-party protos (tools/vendor_protos.py)
2. buf generate: Python messages + .pyi + grpclib stubs, Connect-ES TypeScript (buf.gen.yaml)
3. Python event types from the Avro schemas (tools/gen_events.py)
4. the binary descriptor set Envoy's JSON transcoder and mesh/ read (gen/descriptor/)
5. from schemas/topology.yaml (topology/generate.py): the services' port and topic constants
   (gen/python/shop/topology.py), docker-compose.yml, k8s/generated/, docs/topology.md
6. the mesh output (Envoy, NGINX, Istio, Prometheus, Grafana, OpenAPI, each for the local
   stack and for containers, with the kustomizations Kubernetes loads them through) under
   mesh/out/
7. docs/config.md, from the services' config dataclasses (whose defaults step 5 generates)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUF = str(ROOT / "node_modules" / ".bin" / "buf")
DESCRIPTOR = ROOT / "gen" / "descriptor" / "shop.binpb"


def run(*cmd: str) -> None:
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"gen: failed: {' '.join(cmd)}")


def main() -> None:
    started = time.monotonic()
    run(sys.executable, "tools/vendor_protos.py")
    run(BUF, "generate")
    run(sys.executable, "tools/gen_events.py")
    DESCRIPTOR.parent.mkdir(parents=True, exist_ok=True)
    run(BUF, "build", "schemas/proto", "--as-file-descriptor-set", "-o", str(DESCRIPTOR))
    run(sys.executable, "-m", "topology.generate")
    if (ROOT / "mesh" / "generate.py").exists():
        run(sys.executable, "-m", "mesh.generate")
    run(sys.executable, "tools/config_doc.py")
    print(f"gen: done in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
