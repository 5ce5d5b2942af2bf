"""Replica under load: share of the product service's reads served by the streaming
replica, and replica lag p50/p99 (LSN distance and pg_stat_replication.replay_lag) sampled
every 100 ms while GetProduct/ListProducts load runs and a writer commits to the primary.

Reads go to the stack's product service (its port in schemas/topology.yaml); the read
routing is taken from its /metrics (db_reads_total{target,reason}, delta over the run). The
writer inserts rows into a scratch table in the product database at a fixed rate (WAL
traffic), dropped afterwards. A catalog writer touches the read products (`UPDATE products
SET updated_at = updated_at`, values unchanged) at --catalog-write-rate: each fires the
change notice that drops the product (and its list pages) from the service's catalog cache,
whose refill must then wait for the replica to replay that write. The share is over the
reads that reach a database (cache hits reach none; catalog_cache_lookups gives the hit
ratio). Bounded (--seconds, request cap); any RPC error fails the run.

    python -m bench.replica [--seconds 10] [--concurrency 16] [--write-rate 200]
        [--catalog-write-rate 20]
Writes bench/results/replica.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time
import uuid
from typing import Any

import aiohttp
import asyncpg
from grpclib.client import Channel

from bench.common import BenchFailed, closed_loop, open_loop, percentile, write_result
from shop.product.v1 import product_grpc
from shop.product.v1 import product_pb2 as pb
from shop.topology import SERVICES

PRIMARY = os.environ.get(
    "BENCH_PG_PRIMARY", "postgresql://shopmesh:shopmesh@127.0.0.1:5432/product"
)
REPLICA = os.environ.get(
    "BENCH_PG_REPLICA", "postgresql://shopmesh:shopmesh@127.0.0.1:5433/product"
)
PRODUCT_PORT = int(os.environ.get("PRODUCT_PORT", SERVICES["product"].port))
METRICS = os.environ.get("PRODUCT_METRICS_URL", "http://127.0.0.1:9451/metrics")
READS = re.compile(r"^db_reads_total\{([^}]*)\}\s+([0-9.e+]+)", re.M)
LOOKUPS = re.compile(r'^catalog_cache_lookups\{result="(\w+)"\}\s+([0-9.e+]+)', re.M)


async def read_counts() -> dict[str, float]:
    async with aiohttp.ClientSession() as s, s.get(METRICS, timeout=aiohttp.ClientTimeout(5)) as r:
        text = await r.text()
    out: dict[str, float] = {}
    for result, value in LOOKUPS.findall(text):
        out[f"cache/{result}"] = float(value)
    for labels, value in READS.findall(text):
        lab = dict(kv.split("=", 1) for kv in labels.split(","))
        key = f"{lab.get('target', '').strip(chr(34))}/{lab.get('reason', '').strip(chr(34))}"
        out[key] = out.get(key, 0.0) + float(value)
    return out


def lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    primary = await asyncpg.connect(PRIMARY)
    replica = await asyncpg.connect(REPLICA)
    table = f"bench_replica_{uuid.uuid4().hex[:8]}"
    await primary.execute(f"CREATE TABLE {table} (id bigserial primary key, v text)")
    channel = Channel("127.0.0.1", PRODUCT_PORT)
    stub = product_grpc.ProductServiceStub(channel)
    page = await stub.ListProducts(pb.ListProductsRequest(page_size=20))
    ids = [p.id for p in page.products]
    lag_bytes: list[int] = []
    replay_lag_ms: list[float] = []
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            head = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
            done = await replica.fetchval("SELECT pg_last_wal_replay_lsn()::text")
            lag_bytes.append(max(0, lsn(head) - lsn(done)))
            row = await primary.fetchrow(
                "SELECT extract(epoch FROM replay_lag) * 1000 AS ms FROM pg_stat_replication "
                "ORDER BY replay_lag DESC NULLS LAST LIMIT 1"
            )
            if row is not None and row["ms"] is not None:
                replay_lag_ms.append(float(row["ms"]))
            await asyncio.sleep(0.1)

    async def writer_call(w: int, i: int) -> None:
        await writer.execute(f"INSERT INTO {table} (v) VALUES ($1)", "x" * 200)

    async def catalog_call(w: int, i: int) -> None:
        await writer.execute(
            "UPDATE products SET updated_at = updated_at WHERE id = $1", ids[i % len(ids)]
        )

    async def read_call(w: int, i: int) -> Any:
        if i % 10 == 9:
            return await stub.ListProducts(pb.ListProductsRequest(page_size=20))
        return await stub.GetProduct(pb.GetProductRequest(id=ids[(w * 7 + i) % len(ids)]))

    writer = await asyncpg.create_pool(PRIMARY, min_size=2, max_size=8)
    before = await read_counts()
    sampler = asyncio.ensure_future(sample())
    try:
        reads, writes, catalog_writes = await asyncio.gather(
            closed_loop(read_call, args.concurrency, args.seconds, 100_000, warmup=0,
                        what="reads via product service"),
            open_loop(writer_call, args.write_rate, args.seconds, what="primary writer"),
            open_loop(catalog_call, args.catalog_write_rate, args.seconds,
                      what="catalog writer"),
        )  # fmt: skip
    finally:
        stop.set()
        await sampler
        after = await read_counts()
        await primary.execute(f"DROP TABLE IF EXISTS {table}")
        for c in (primary, replica):
            await c.close()
        await writer.close()
        channel.close()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    cache = {k.split("/", 1)[1]: v for k, v in delta.items() if k.startswith("cache/")}
    delta = {k: v for k, v in delta.items() if not k.startswith("cache/")}
    total = sum(delta.values())
    if total <= 0:
        raise BenchFailed("product service counted no database reads (metrics port?)")
    replica_reads = sum(v for k, v in delta.items() if k.startswith("replica/"))
    lookups = sum(cache.values())
    lb, rl = sorted(lag_bytes), sorted(replay_lag_ms)
    return {
        "what": "GetProduct/ListProducts (9:1) against the stack's product service while a "
        "writer commits to the primary and a catalog writer touches the read products (each "
        "a cache invalidation); replica_share is over the reads that reach a database; lag "
        "sampled every 100 ms",
        "settings": vars(args),
        "reads": reads.as_dict(),
        "writes": writes.as_dict(),
        "catalog_writes": catalog_writes.as_dict(),
        "reads_by_route": delta,
        "db_reads": total,
        "cache_lookups": cache,
        "cache_hit_ratio": round(cache.get("hit", 0) / lookups, 4) if lookups else None,
        "replica_share": round(replica_reads / total, 4),
        "lag_bytes": {
            "samples": len(lb),
            "p50": percentile(lb, 50),
            "p99": percentile(lb, 99),
            "max": lb[-1] if lb else None,
        },
        "replay_lag_ms": {
            "samples": len(rl),
            "p50": percentile(rl, 50) if rl else None,
            "p99": percentile(rl, 99) if rl else None,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--write-rate", type=float, default=200.0)
    ap.add_argument("--catalog-write-rate", type=float, default=20.0)
    args = ap.parse_args()
    started = time.time()
    result = asyncio.run(bench(args))
    path = write_result("replica", result)
    print(
        f"replica share {result['replica_share']:.1%} of {result['db_reads']:.0f} db reads, "
        f"cache hit ratio {result['cache_hit_ratio']}, lag bytes p99 {result['lag_bytes']['p99']}"
        f", replay_lag p99 {result['replay_lag_ms']['p99']} ms ({time.time() - started:.0f}s)"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
