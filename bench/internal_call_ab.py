"""Internal calls with the caller's service token: the runtime's tuned client channel
(services/runtime/transport.py `tune_channel`: coalesced writes, no Huffman coding, the own
token indexed in HPACK) against a plain grpclib Channel, same run, same server.

Both sides call one RuntimeServer (grpclib's Health service: the handler does next to
nothing, so the transport's share is visible) in this process, each call with a service
token of the size ours are (`Bearer` + a signed JWT, ~330 bytes) in `authorization`, a
`traceparent` and a deadline, as services/runtime's channels send them. Closed loop at
--concurrency for --seconds per point, sides interleaved over --rounds; CPU per call is this
process's (client and server halves together) over the measured window.

    python -m bench.internal_call_ab [--rounds 5] [--seconds 2] [--concurrency 8]
Writes bench/results/internal_call_ab.json.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from grpclib.client import Channel
from grpclib.health.service import Health
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest

from bench.common import closed_loop, median_range, run_main, write_result
from services.runtime.auth.identity import ServiceIdentity
from services.runtime.transport import RuntimeServer, tune_channel


def _token() -> str:
    return f"Bearer {ServiceIdentity.from_env('order').token()}"


async def _point(stub: HealthStub, token: str, concurrency: int, seconds: float) -> dict:
    request = HealthCheckRequest()

    async def call(worker: int, i: int) -> None:
        metadata = {
            "authorization": token,
            "traceparent": f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01",
        }
        await stub.Check(request, metadata=metadata, timeout=3.0)

    await closed_loop(call, concurrency, 0.3, warmup=0)  # warm-up: connection, HPACK table
    cpu0 = time.process_time()
    result = await closed_loop(call, concurrency, seconds, warmup=0)
    cpu = time.process_time() - cpu0
    return {
        "calls": result.calls,
        "calls_per_s": round(result.per_s, 1),
        "p50_ms": round(result.p50_ms, 3),
        "cpu_us_per_call": round(1e6 * cpu / max(1, result.calls), 1),
    }


async def bench(rounds: int, seconds: float, concurrency: int) -> dict[str, Any]:
    server = RuntimeServer([Health()])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    token = _token()
    own = token.encode()
    channels = {
        "plain": Channel("127.0.0.1", port),
        "tuned": tune_channel(Channel("127.0.0.1", port), lambda: own),
    }
    stubs = {name: HealthStub(ch) for name, ch in channels.items()}
    points: list[dict[str, Any]] = []
    try:
        for r in range(rounds):
            order = list(stubs) if r % 2 == 0 else list(reversed(stubs))
            row: dict[str, Any] = {"round": r}
            for side in order:
                row[side] = await _point(stubs[side], token, concurrency, seconds)
            row["cpu_ratio_tuned_over_plain"] = round(
                row["tuned"]["cpu_us_per_call"] / row["plain"]["cpu_us_per_call"], 3
            )
            print(row, flush=True)
            points.append(row)
    finally:
        for ch in channels.values():
            ch.close()
        server.close()
        await server.wait_closed()
    summary = {
        side: {
            "cpu_us_per_call": median_range(p[side]["cpu_us_per_call"] for p in points),
            "calls_per_s": median_range(p[side]["calls_per_s"] for p in points),
        }
        for side in ("plain", "tuned")
    }
    summary["cpu_ratio_tuned_over_plain"] = median_range(
        p["cpu_ratio_tuned_over_plain"] for p in points
    )
    return {
        "what": __doc__.split("\n\n")[0].replace("\n", " "),
        "settings": {
            "rounds": rounds,
            "seconds": seconds,
            "concurrency": concurrency,
            "token_bytes": len(token),
        },
        "summary": summary,
        "rounds": points,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    out = run_main(bench(args.rounds, args.seconds, args.concurrency))
    write_result("internal_call_ab", out)
    print(out["summary"])


if __name__ == "__main__":
    main()
