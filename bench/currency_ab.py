"""Convert's cost with the version in effect asked of PostgreSQL on every call (TTL 0)
against at most once a second (CURRENCY_CURRENT_TTL_S=1, the default), same run.

Two private currency-service processes (one worker each, the stack's database, spare
ports) serve Convert of 20 USD prices into EUR (a catalog page, as the storefront's switch
asks), C=4, in alternating rounds; per round: calls/s, p50/p99, the service's CPU per call
(/proc) and the primary's CPU for the currency database per call (stack_cpu: its backends;
only one side is loaded at a time, so a round's delta is its side's).

    python -m bench.currency_ab [--rounds 4] [--seconds 3]
Writes bench/results/currency_ab.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from grpclib.client import Channel

from bench.common import BenchFailed, closed_loop, free_port, proc_cpu_s, run_main, write_result
from bench.order_cost import stack_cpu
from shop.common.v1 import common_pb2
from shop.currency.v1 import currency_pb2
from shop.currency.v1.currency_grpc import CurrencyServiceStub

SIDES = {"ttl_0": "0", "ttl_1s": "1.0"}
PAGE = [
    common_pb2.Money(currency_code="USD", units=10 + i, nanos=(i * 37_000_000) % 1_000_000_000)
    for i in range(20)
]


def start(ttl: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {
        **os.environ, "SHOPMESH_ENV": "dev", "CURRENCY_GRPC_PORT": str(port),
        "CURRENCY_METRICS_PORT": str(free_port()), "CURRENCY_WORKERS": "1",
        "CURRENCY_MIGRATE_ON_START": "false", "CURRENCY_CURRENT_TTL_S": ttl,
        "CURRENCY_ACCESS_LOG": "off",
    }  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.currency.main"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, port


async def wait_up(stub: CurrencyServiceStub) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            await stub.ListCurrencies(currency_pb2.ListCurrenciesRequest(), timeout=1)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise BenchFailed("a currency service did not come up") from None
            await asyncio.sleep(0.3)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    procs = {name: start(ttl) for name, ttl in SIDES.items()}
    channels = {name: Channel("127.0.0.1", port) for name, (_, port) in procs.items()}
    try:
        stubs = {name: CurrencyServiceStub(ch) for name, ch in channels.items()}
        for stub in stubs.values():
            await wait_up(stub)
        req = currency_pb2.ConvertRequest(amounts=PAGE, to_currency_code="EUR")
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in SIDES}
        for r in range(args.rounds + 1):  # round 0 warms both
            for name, stub in stubs.items():
                pid = procs[name][0].pid
                cpu0, pg0 = proc_cpu_s(pid), stack_cpu().get("pg-primary:currency", 0.0)

                made = [0]  # every call, warm-up included: the CPU window holds them all

                async def call(
                    w: int, i: int, stub: CurrencyServiceStub = stub, made: list[int] = made
                ) -> None:
                    made[0] += 1
                    await stub.Convert(req)

                res = await closed_loop(call, args.concurrency, args.seconds, what=name)
                cpu1, pg1 = proc_cpu_s(pid), stack_cpu().get("pg-primary:currency", 0.0)
                if r == 0:
                    continue
                calls = made[0]
                rounds[name].append({
                    "calls": calls, "calls_per_s": res.per_s,
                    "p50_ms": res.p50_ms, "p99_ms": res.p99_ms,
                    "service_cpu_us_per_call": round((cpu1 - cpu0) * 1e6 / calls, 1),
                    "pg_cpu_us_per_call": round((pg1 - pg0) * 1e6 / calls, 1),
                })  # fmt: skip
    finally:
        for ch in channels.values():
            ch.close()
        for proc, _ in procs.values():
            proc.terminate()
        for proc, _ in procs.values():
            proc.wait(10)

    def med(name: str, key: str) -> float:
        return statistics.median(x[key] for x in rounds[name])

    keys = ("calls_per_s", "p50_ms", "p99_ms", "service_cpu_us_per_call", "pg_cpu_us_per_call")
    summary = {name: {k: med(name, k) for k in keys} for name in SIDES}
    ratio = {
        k: round(summary["ttl_1s"][k] / summary["ttl_0"][k], 2) for k in keys if summary["ttl_0"][k]
    }
    return {
        "what": "Convert of a 20-price page, version in effect asked every call (ttl_0) vs at "
        "most once a second (ttl_1s, the default); private processes, alternating rounds",
        "params": vars(args),
        "rounds": rounds,
        "summary_median": summary,
        "ratio_ttl_1s_over_ttl_0": ratio,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    result = run_main(bench(args))
    print(write_result("currency_ab", result))
    print(result["summary_median"], result["ratio_ttl_1s_over_ttl_0"], sep="\n")


if __name__ == "__main__":
    main()
