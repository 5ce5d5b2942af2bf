"""What the gateway costs per shop request: the Online Boutique mix (bench/shop_load.py, one
step at a fixed user count) through two generated gateway configs side by side.

Each side is one generated mesh/out run as a private NGINX + Envoy (bench/mesh_sides.py:
files as generated, ports and rate-limit numbers rewritten) in front of the stack's own
services, so the mix, the services and the databases are the same for both; only the edge
differs. Service-to-service calls still go through the stack's Envoy (its internal
listener is not part of this A/B: bench/internal_authz.py measures that one). Rounds are
interleaved, the side order rotated each round; per step: requests, req/s, p50/p99 and the
CPU per shop request of the side's Envoy and NGINX (schedstat of every thread over the
step), plus the side's edge requests per shop request (Envoy passes per action mix).
Ratios new/base are taken within a round; medians (min-max) over rounds are reported.

    python -m bench.mesh_shop_ab --side base=git:HEAD --side new=mesh/out \\
        [--users 21] [--seconds 8] [--rounds 3] [--change NAME --note TEXT]

A side is NAME=SOURCE[@ENVOY_CONCURRENCY] (default 2, as the stack runs Envoy). Needs the
stack up (`make up`). `--change NAME` keeps the run as changes[NAME] of
bench/results/mesh_shop_ab.json; without it nothing is written.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import BenchFailed, git_head, median_range, record_entry
from bench.mesh_sides import Gateway, start_gateway
from mesh.services import SERVICES

ROOT = Path(__file__).resolve().parent.parent


def _edge_requests(gw: Gateway) -> int:
    url = f"http://127.0.0.1:{gw.ports.admin}/stats?filter=^http.edge.downstream_rq_total$"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return int(text.split(":")[1]) if ":" in text else 0


def _shop_step(gw: Gateway, users: int, seconds: float) -> dict[str, Any]:
    env = {**os.environ, "SHOPMESH_GATEWAY": gw.base_url}
    argv = [sys.executable, "-m", "bench.shop_load", "--at-users", str(users),
            "--seconds", str(seconds)]  # fmt: skip
    cpu0, edge0 = gw.cpu(), _edge_requests(gw)
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    cpu1, edge1 = gw.cpu(), _edge_requests(gw)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise BenchFailed(f"shop_load via {gw.name}: {proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    res = json.loads(lines[-1])
    n = res["requests"]
    envoy_us = (cpu1["envoy"] - cpu0["envoy"]) / 1000 / n
    nginx_us = (cpu1["nginx"] - cpu0["nginx"]) / 1000 / n
    return {
        "requests": n,
        "req_per_s": res["req_per_s"],
        "p50_ms": res["p50_ms"],
        "p99_ms": res["p99_ms"],
        "read_p99_ms": res["read_p99_ms"],
        "checkouts": res["checkouts"],
        "errors": res["errors"],
        "envoy_us": round(envoy_us, 1),
        "nginx_us": round(nginx_us, 1),
        "gateway_us": round(envoy_us + nginx_us, 1),
        # Envoy edge passes per shop request (setup logins and cart resets included).
        "edge_requests_per_request": round((edge1 - edge0) / n, 3),
    }


# What a service restarted by someone else on the shared stack answers meanwhile, and a
# PlaceOrder past its deadline while other engineers' runs saturate order's dependencies.
RESTART_SIGNS = (
    "server is shutting down",
    "remote connection failure",
    "no healthy upstream",
    "upstream request timeout",
)


def _step_again_if_restarted(gw: Gateway, args: argparse.Namespace, retried: list[str]) -> dict:
    """One step; a step that failed because a stack service was being restarted or was
    past its deadline (other engineers share the stack) is discarded whole and run again,
    at most twice, and named in the results. Any other error fails the run."""
    for attempt in range(3):
        try:
            return _shop_step(gw, args.users, args.seconds)
        except BenchFailed as exc:
            if attempt == 2 or not any(s in str(exc) for s in RESTART_SIGNS):
                raise
            retried.append(f"{gw.name}: {str(exc)[:300]}")
            print(f"step via {gw.name} repeated: a service restarted meanwhile", flush=True)
            time.sleep(15)
    raise AssertionError("unreachable")


def _side(spec: str) -> tuple[str, str, int]:
    name, _, rest = spec.partition("=")
    source, _, conc = rest.partition("@")
    if not name or not source:
        raise SystemExit(f"--side NAME=SOURCE[@CONCURRENCY], got {spec!r}")
    return name, source, int(conc or 2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sides = [_side(s) for s in args.side]
    if len(sides) < 2:
        raise SystemExit("two sides at least: --side base=git:HEAD --side new=mesh/out")
    upstream = [("127.0.0.1", SERVICES["product"])]
    rounds: list[dict[str, Any]] = []
    retried: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mesh_shop_ab-") as tmp:
        gws = [
            start_gateway(n, src, Path(tmp), upstream, cpu=None, envoy_concurrency=c)
            for n, src, c in sides
        ]
        try:
            for r in range(args.rounds):
                order = gws[r % len(gws) :] + gws[: r % len(gws)]
                point = {}
                for gw in order:
                    point[gw.name] = _step_again_if_restarted(gw, args, retried)
                    print(json.dumps({"round": r, "side": gw.name, **point[gw.name]}), flush=True)
                rounds.append(point)
        finally:
            for gw in gws:
                gw.stop()
    base = sides[0][0]
    keys = ("req_per_s", "p99_ms", "envoy_us", "nginx_us", "gateway_us")
    summary: dict[str, Any] = {}
    for name, _, _ in sides:
        summary[name] = {
            k: median_range((p[name][k] for p in rounds), 2)
            for k in (*keys, "edge_requests_per_request")
        }
        if name != base:
            summary[f"{name}_vs_{base}"] = {
                k: median_range((p[name][k] / p[base][k] for p in rounds if p[base][k]), 3)
                for k in keys
            }
    return {
        "what": "Online Boutique mix (bench/shop_load step) through private NGINX + Envoy "
        "sides in front of the stack's services; CPU per shop request of the side's Envoy "
        "and NGINX; ratios within a round",
        "sides": {n: f"{src} (Envoy --concurrency {c})" for n, src, c in sides},
        "users": args.users,
        "seconds": args.seconds,
        "commit": git_head(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_at_end": round(os.getloadavg()[0], 2),
        "note": args.note,
        "summary": summary,
        "rounds": rounds,
        "steps_repeated": retried,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", action="append", default=[], help="NAME=SOURCE[@CONCURRENCY]")
    ap.add_argument("--users", type=int, default=21)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--change", default="", help="keep under changes[NAME] in the results")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    # A stopped run still stops its private Envoys and NGINXs (run's finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    print(json.dumps(result["summary"], indent=1))
    if args.change:
        print(record_entry("mesh_shop_ab", "changes", args.change, result))


if __name__ == "__main__":
    main()
