"""Same-run A/B of Envoy's token checks between two generated configs, on one call:

- `--call reserve` (default): ReserveStock as order (order's own service token; jwt_authn
  + RBAC decide) on the internal listener, to one stand-in ProductService (mesh.testing's
  CountingProduct, its own process, answering at once);
- `--call edge_get_user`: GET /api/v1/users/{id} (REST, a user method) on the edge listener
  with a shopper's access token (an account the run registers through the stack's NGINX),
  to the stack's user service.

Keys are fetched from the stack's auth service through each side's own edge listener,
exactly as the stack's Envoy does.

A side is a generated mesh/out (`git:REV` or a directory, bench/mesh_sides.py), its ports
and the product endpoint rewritten. Rounds alternate the side order; per round and side:
calls/s, p50, Envoy CPU per call (bench/internal_authz.py's loop), and over the run each
side's verified-token cache hits and misses per call and RBAC decisions. Ratios new/base
are taken within a round; medians (min-max) over rounds.

    python -m bench.mesh_internal_ab --base git:REV [--new mesh/out] [--rounds 5]
        [--seconds 3] [--concurrency 8] [--call reserve|edge_get_user]
        [--change NAME --note TEXT]

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
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.common import free_port, git_head, median_range, record_entry, run_main
from bench.internal_authz import MAX_CALLS, cpu_s, one_round
from bench.mesh_sides import Ports, describe, materialize, rewrite_envoy
from mesh.testing import PrivateEnvoy


def _side_envoy(
    source: str, work: Path, product_port: int, listener: str
) -> tuple[PrivateEnvoy, int]:
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
    return proxy, ports.internal if listener == "internal" else ports.edge


def _counters(proxy: PrivateEnvoy, listener: str) -> dict[str, int]:
    stats = proxy.stats()
    keys = {
        "jwt_cache_hit": f"http.{listener}.jwt_authn.jwt_cache_hit",
        "jwt_cache_miss": f"http.{listener}.jwt_authn.jwt_cache_miss",
        "rbac_allowed": f"http.{listener}.rbac.allowed",
        "rbac_denied": f"http.{listener}.rbac.denied",
    }
    return {k: stats.get(v, 0) for k, v in keys.items()}


async def _shopper() -> tuple[str, str]:
    """A fresh account's access token and id, through the stack's NGINX."""
    email = f"mesh-ab-{uuid.uuid4().hex[:10]}@bench.local"
    pw = "Bench-pass-" + uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession(base_url="http://127.0.0.1:8080") as s:
        body = {"email": email, "password": pw, "display_name": "Bench"}
        async with s.post("/api/v1/users", json=body) as r:
            r.raise_for_status()
        async with s.post("/api/v1/auth/login", json={"email": email, "password": pw}) as r:
            r.raise_for_status()
            tokens = (await r.json())["tokens"]
    return tokens["access_token"], tokens["user_id"]


async def edge_user_round(
    port: int, pid: int, seconds: float, concurrency: int, token: str, user_id: str
) -> dict:
    """GET /api/v1/users/{id} with the shopper's token, closed loop (as one_round)."""
    url = f"http://127.0.0.1:{port}/api/v1/users/{user_id}"
    headers = {"authorization": f"Bearer {token}"}
    calls, errors = 0, 0
    lat: list[float] = []
    async with aiohttp.ClientSession() as s:

        async def once() -> None:
            async with s.get(url, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}")

        await once()  # warm (JWKS fetched)
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal calls, errors
            while time.monotonic() < deadline and calls + errors < MAX_CALLS:
                t0 = time.perf_counter()
                try:
                    await once()
                    calls += 1
                    lat.append(time.perf_counter() - t0)
                except Exception:
                    errors += 1

        cpu0, t0 = cpu_s(pid), time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, cpu = time.monotonic() - t0, cpu_s(pid) - cpu0
    lat.sort()
    return {
        "calls": calls,
        "errors": errors,
        "calls_per_s": round(calls / elapsed, 1),
        "envoy_cpu_us_per_call": round(cpu / max(calls, 1) * 1e6, 1),
        "p50_ms": round(lat[len(lat) // 2] * 1000, 3) if lat else None,
    }


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
    listener = "internal" if args.call == "reserve" else "edge"
    shopper = await _shopper() if args.call == "edge_get_user" else None
    with tempfile.TemporaryDirectory(prefix="mesh_internal_ab-") as tmp:
        envoys = {
            n: _side_envoy(src, Path(tmp) / n, product_port, listener) for n, src in sides.items()
        }
        try:
            start = {n: _counters(p, listener) for n, (p, _) in envoys.items()}
            for i in range(args.rounds):
                names = list(sides) if i % 2 == 0 else list(reversed(sides))
                point = {}
                for name in names:
                    proxy, port = envoys[name]
                    assert proxy.proc is not None
                    if shopper is None:
                        point[name] = await one_round(
                            port, proxy.proc.pid, args.seconds, args.concurrency
                        )
                    else:
                        point[name] = await edge_user_round(
                            port, proxy.proc.pid, args.seconds, args.concurrency, *shopper
                        )
                    if point[name]["errors"]:
                        raise SystemExit(f"{name}: {point[name]['errors']} errors")
                print(json.dumps({"round": i, **point}), flush=True)
                rounds.append(point)
            for n, (p, _) in envoys.items():
                end = _counters(p, listener)
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
        "what": (
            "ReserveStock as order through two generated configs' internal listeners, one "
            "stand-in upstream"
            if shopper is None
            else "GET /api/v1/users/{id} with a shopper's token through two generated "
            "configs' edge listeners, to the stack's user service"
        )
        + " (private Envoys, --concurrency 1, no access log on either)",
        "call": args.call,
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
    ap.add_argument("--call", choices=("reserve", "edge_get_user"), default="reserve")
    ap.add_argument("--change", default="")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    result = run_main(bench(args))
    print(json.dumps(result["summary"], indent=1))
    if args.change:
        print(record_entry("mesh_internal_ab", "changes", args.change, result))


if __name__ == "__main__":
    main()
