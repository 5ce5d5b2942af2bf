"""Registry throughput: idempotent register, lookup and id fetch, against the real server.

Starts `python -m registry serve` on a free 127.0.0.1 port with the real PostgreSQL store
(REGISTRY_DATABASE_URL, default the stack's primary; tables in a throwaway PostgreSQL
schema, dropped afterwards). Each scenario runs CONCURRENCY client loops for a bounded time
(and request count). The baseline is the same server's trivial `GET /` (routing + JSON, no
store), the ceiling the other figures are reported against. Writes bench/results/registry.json.

    python bench/registry_bench.py [--seconds 5] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

from bench.common import write_result
from registry.config import DEFAULT_DATABASE_URL

REPO = Path(__file__).resolve().parent.parent
CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
MAX_REQUESTS = 50_000  # per scenario, bounds the run on a fast machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _scenario(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes | None,
    seconds: float,
    concurrency: int,
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal errors
        while time.perf_counter() < deadline and len(latencies) < MAX_REQUESTS:
            t0 = time.perf_counter()
            async with session.request(method, url, data=body, headers=CT) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


async def run(seconds: float, concurrency: int) -> dict:
    dsn = os.environ.get("REGISTRY_DATABASE_URL", DEFAULT_DATABASE_URL)
    pg_schema = f"regbench_{uuid.uuid4().hex[:8]}"
    port = _free_port()
    env = {
        **os.environ,
        "REGISTRY_DATABASE_URL": dsn,
        "REGISTRY_DATABASE_SCHEMA": pg_schema,
        "REGISTRY_PORT": str(port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry", "serve", cwd=REPO, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency)
        ) as session:
            for _ in range(300):
                try:
                    async with session.get(f"{base}/") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            else:
                raise RuntimeError("registry did not start")
            schema = (REPO / "schemas/avro/shop/events/v1/UserRegistered.avsc").read_text()
            body = json.dumps({"schema": schema}).encode()
            subject = "bench.users.v1-shop.events.v1.UserRegistered"
            async with session.post(
                f"{base}/subjects/{subject}/versions", data=body, headers=CT
            ) as resp:
                schema_id = (await resp.json())["id"]
            scenarios = {
                "baseline_get_root": ("GET", f"{base}/", None),
                "register_idempotent": ("POST", f"{base}/subjects/{subject}/versions", body),
                "lookup_subject_schema": ("POST", f"{base}/subjects/{subject}", body),
                "get_schema_by_id": ("GET", f"{base}/schemas/ids/{schema_id}", None),
            }
            results = {}
            for name, (method, url, payload) in scenarios.items():
                await _scenario(session, method, url, payload, min(1.0, seconds), concurrency)
                results[name] = await _scenario(session, method, url, payload, seconds, concurrency)
                print(
                    f"{name:<24} {results[name]['rps']:>9.1f} req/s  "
                    f"p50 {results[name]['p50_ms']} ms  p99 {results[name]['p99_ms']} ms",
                    flush=True,
                )
    finally:
        proc.terminate()
        await proc.wait()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{pg_schema}" CASCADE')
        finally:
            await conn.close()
    ceiling = results["baseline_get_root"]["rps"]
    for r in results.values():
        r["ratio_to_baseline"] = round(r["rps"] / ceiling, 3) if ceiling else None
    return {
        "benchmark": "registry",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {
            "seconds": seconds,
            "concurrency": concurrency,
            "store": "postgresql",
            "server": "one aiohttp process, loopback client in a separate process",
        },
        "results": results,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    report = asyncio.run(run(args.seconds, args.concurrency))
    path = write_result("registry", report)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
