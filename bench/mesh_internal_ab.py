"""Same-run A/B of Envoy's internal listener (service to service) between two generated
configs: ReserveStock as order (order's own service token; jwt_authn + RBAC decide) through
each side's private Envoy to one stand-in ProductService (mesh.testing's CountingProduct,
its own process, answering at once), keys fetched from the stack's auth service through
each side's own edge listener, exactly as the stack's Envoy does.

A side is a generated mesh/out (`git:REV` or a directory, bench/mesh_sides.py), its ports
and the product endpoint rewritten. Rounds alternate the side order; per round and side:
calls/s, p50, Envoy CPU per call (bench/internal_authz.py's loop), and over the run each
side's verified-token cache hits and misses per call and RBAC decisions. Ratios new/base
are taken within a round; medians (min-max) over rounds.

    python -m bench.mesh_internal_ab --base git:REV [--new mesh/out] [--rounds 5]
        [--seconds 3] [--concurrency 8] [--change NAME --note TEXT]

Needs the stack's auth service (`make up`). `--change NAME` keeps the run as
changes[NAME] of bench/results/mesh_internal_ab.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import free_port, git_head, median_range, record_entry, run_main
from bench.internal_authz import one_round
from bench.mesh_sides import Ports, describe, materialize, rewrite_envoy
from mesh.testing import PrivateEnvoy


def _side_envoy(source: str, work: Path, product_port: int) -> tuple[PrivateEnvoy, int]:
    files = work / "files"
    materialize(source, files)
    ports = Ports()
    cfg = yaml.safe_load((files / "envoy" / "envoy.yaml").read_text())
    cfg = rewrite_envoy(cfg, ports, [("127.0.0.1", product_port)], files)
    for listener in cfg["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        hcm.pop("access_log", None)  # both sides alike: the filters are what is compared
    proxy = PrivateEnvoy(cfg, work / "envoy", ports.admin)
    proxy.__enter__()
    return proxy, ports.internal


def _counters(proxy: PrivateEnvoy) -> dict[str, int]:
    stats = proxy.stats()
    keys = {
        "jwt_cache_hit": "http.internal.jwt_authn.jwt_cache_hit",
        "jwt_cache_miss": "http.internal.jwt_authn.jwt_cache_miss",
        "rbac_allowed": "http.internal.rbac.allowed",
        "rbac_denied": "http.internal.rbac.denied",
    }
    return {k: stats.get(v, 0) for k, v in keys.items()}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    sides = {"base": args.base, "new": args.new}
    product_port = free_port()
    upstream = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mesh.testing", str(product_port), stdout=asyncio.subprocess.PIPE
    )
    assert upstream.stdout is not None
    await asyncio.wait_for(upstream.stdout.readline(), 30)  # "serving"
    rounds: list[dict[str, Any]] = []
    counters: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="mesh_internal_ab-") as tmp:
        envoys = {n: _side_envoy(src, Path(tmp) / n, product_port) for n, src in sides.items()}
        try:
            start = {n: _counters(p) for n, (p, _) in envoys.items()}
            for i in range(args.rounds):
                names = list(sides) if i % 2 == 0 else list(reversed(sides))
                point = {}
                for name in names:
                    proxy, port = envoys[name]
                    assert proxy.proc is not None
                    point[name] = await one_round(
                        port, proxy.proc.pid, args.seconds, args.concurrency
                    )
                    if point[name]["errors"]:
                        raise SystemExit(f"{name}: {point[name]['errors']} errors")
                print(json.dumps({"round": i, **point}), flush=True)
                rounds.append(point)
            for n, (p, _) in envoys.items():
                end = _counters(p)
                counters[n] = {k: end[k] - start[n][k] for k in end}
        finally:
            for proxy, _ in envoys.values():
                proxy.__exit__()
            upstream.terminate()
            await upstream.wait()
    calls = {n: sum(p[n]["calls"] for p in rounds) for n in sides}
    summary: dict[str, Any] = {
        n: {
            "calls_per_s": median_range((p[n]["calls_per_s"] for p in rounds), 1),
            "envoy_cpu_us_per_call": median_range(
                (p[n]["envoy_cpu_us_per_call"] for p in rounds), 1
            ),
            "jwt_cache_misses_per_call": round(counters[n]["jwt_cache_miss"] / calls[n], 2),
            "jwt_cache_hits_per_call": round(counters[n]["jwt_cache_hit"] / calls[n], 2),
            "rbac": {k: counters[n][k] for k in ("rbac_allowed", "rbac_denied")},
        }
        for n in sides
    }
    summary["new_vs_base"] = {
        k: median_range((p["new"][k] / p["base"][k] for p in rounds), 3)
        for k in ("calls_per_s", "envoy_cpu_us_per_call")
    }
    return {
        "what": "ReserveStock as order through two generated configs' internal listeners "
        "(private Envoys, --concurrency 1, no access log on either), one stand-in upstream",
        "sides": {n: describe(src) for n, src in sides.items()},
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "commit": git_head(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_at_end": round(os.getloadavg()[0], 2),
        "note": args.note,
        "summary": summary,
        "rounds": rounds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git:REV or a generated mesh/out directory")
    ap.add_argument("--new", default="mesh/out")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--change", default="")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    result = run_main(bench(args))
    print(json.dumps(result["summary"], indent=1))
    if args.change:
        print(record_entry("mesh_internal_ab", "changes", args.change, result))


if __name__ == "__main__":
    main()
