"""Convert's cost with the version in effect asked of PostgreSQL on every call (TTL 0)
against at most once a second (CURRENCY_CURRENT_TTL_S=1, the default), same run; or, with
--base, the currency service of a base git revision against a new one (worktrees under
/tmp, both at the default TTL), for Convert and ListCurrencies.

Two private currency-service processes (one worker each, the stack's database, spare
ports) serve Convert of 20 USD prices (a catalog page, as the storefront's switch asks:
into EUR; with --base into each of the demo currencies in turn) and, with --base,
ListCurrencies, C=4, in alternating rounds; per round: calls/s, p50/p99, the service's CPU
per call (/proc) and the primary's CPU for the currency database per call (stack_cpu: its
backends; only one side is loaded at a time, so a round's delta is its side's).

    python -m bench.currency_ab [--rounds 4] [--seconds 3]
    python -m bench.currency_ab --base 3982052~1 [--new HEAD] [--name ...]
Writes bench/results/currency_ab.json; with --base, a named entry of
bench/results/currency_ab_rev.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from grpclib.client import Channel

from bench.common import (
    ROOT,
    BenchFailed,
    closed_loop,
    free_port,
    machine,
    median_range,
    proc_cpu_s,
    record_entry,
    run_main,
    write_result,
)
from bench.order_cost import stack_cpu
from shop.common.v1 import common_pb2
from shop.currency.v1 import currency_pb2
from shop.currency.v1.currency_grpc import CurrencyServiceStub

SIDES = {"ttl_0": "0", "ttl_1s": "1.0"}
CURRENCIES = ("EUR", "GBP", "JPY", "CAD", "CHF")  # the demo rates (services/currency/demo.py)
PAGE = [
    common_pb2.Money(currency_code="USD", units=10 + i, nanos=(i * 37_000_000) % 1_000_000_000)
    for i in range(20)
]


def start(ttl: str, tree: Path | None = None) -> tuple[subprocess.Popen, int]:
    """A private currency service of `tree` (a worktree; None: this one)."""
    port = free_port()
    code = {"PYTHONPATH": f"{tree}:{tree / 'gen' / 'python'}"} if tree else {}
    env = {**code,
        **os.environ, "SHOPMESH_ENV": "dev", "CURRENCY_GRPC_PORT": str(port),
        "CURRENCY_METRICS_PORT": str(free_port()), "CURRENCY_WORKERS": "1",
        "CURRENCY_MIGRATE_ON_START": "false", "CURRENCY_CURRENT_TTL_S": ttl,
        "CURRENCY_ACCESS_LOG": "off",
    }  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.currency.main"], env=env, cwd=tree,
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


async def measure(
    sides: dict[str, tuple[str, Path | None]], rpcs: tuple[str, ...], args: argparse.Namespace
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Rounds of each rpc on each side's private process, sides alternating."""
    procs = {name: start(ttl, tree) for name, (ttl, tree) in sides.items()}
    channels = {name: Channel("127.0.0.1", port) for name, (_, port) in procs.items()}
    convert_to = CURRENCIES if args.base else ("EUR",)
    requests = [currency_pb2.ConvertRequest(amounts=PAGE, to_currency_code=c) for c in convert_to]
    listing = currency_pb2.ListCurrenciesRequest()
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {n: {r: [] for r in rpcs} for n in sides}
    try:
        stubs = {name: CurrencyServiceStub(ch) for name, ch in channels.items()}
        for stub in stubs.values():
            await wait_up(stub)
        for r in range(args.rounds + 1):  # round 0 warms both
            names = list(stubs) if r % 2 == 0 else list(reversed(stubs))
            for name, rpc in itertools.product(names, rpcs):
                stub, pid = stubs[name], procs[name][0].pid
                cpu0, pg0 = proc_cpu_s(pid), stack_cpu().get("pg-primary:currency", 0.0)

                made = [0]  # every call, warm-up included: the CPU window holds them all

                async def call(
                    w: int, i: int, stub: CurrencyServiceStub = stub, made: list[int] = made,
                    rpc: str = rpc,
                ) -> None:  # fmt: skip
                    made[0] += 1
                    if rpc == "Convert":
                        await stub.Convert(requests[made[0] % len(requests)])
                    else:
                        await stub.ListCurrencies(listing)

                res = await closed_loop(call, args.concurrency, args.seconds, what=name)
                cpu1, pg1 = proc_cpu_s(pid), stack_cpu().get("pg-primary:currency", 0.0)
                if r == 0:
                    continue
                calls = made[0]
                rounds[name][rpc].append({
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
    return rounds


KEYS = ("calls_per_s", "p50_ms", "p99_ms", "service_cpu_us_per_call", "pg_cpu_us_per_call")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    got = await measure({n: (ttl, None) for n, ttl in SIDES.items()}, ("Convert",), args)
    rounds = {name: got[name]["Convert"] for name in SIDES}

    def med(name: str, key: str) -> float:
        return statistics.median(x[key] for x in rounds[name])

    summary = {name: {k: med(name, k) for k in KEYS} for name in SIDES}
    ratio = {
        k: round(summary["ttl_1s"][k] / summary["ttl_0"][k], 2) for k in KEYS if summary["ttl_0"][k]
    }
    return {
        "what": "Convert of a 20-price page, version in effect asked every call (ttl_0) vs at "
        "most once a second (ttl_1s, the default); private processes, alternating rounds",
        "params": vars(args),
        "rounds": rounds,
        "summary_median": summary,
        "ratio_ttl_1s_over_ttl_0": ratio,
    }


async def bench_revisions(args: argparse.Namespace, base: Path, new: Path) -> dict[str, Any]:
    rpcs = ("Convert", "ListCurrencies")
    got = await measure({"base": ("1.0", base), "new": ("1.0", new)}, rpcs, args)
    summary: dict[str, Any] = {}
    for rpc in rpcs:
        pairs = list(zip(got["base"][rpc], got["new"][rpc], strict=True))
        for k in ("service_cpu_us_per_call", "calls_per_s", "p99_ms"):
            summary[f"{rpc}.{k}.new_over_base"] = median_range(n[k] / b[k] for b, n in pairs)
        for side in ("base", "new"):
            for k in KEYS:
                summary[f"{rpc}.{side}.{k}"] = median_range(x[k] for x in got[side][rpc])
    return {
        "what": "currency service of a base revision vs a new one (private processes, TTL "
        "1 s): Convert of a 20-price page into each demo currency in turn, ListCurrencies; "
        "C=4, alternating rounds; ratios per round, median (min-max)",
        "base": rev(args.base),
        "new": rev(args.new),
        "params": {"rounds": args.rounds, "seconds": args.seconds, "concurrency": args.concurrency},
        "summary": summary,
        "rounds": got,
        "machine": machine(),
    }


def rev(r: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", r], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def worktree(r: str) -> Path:
    tree = Path(f"/tmp/currency-ab-{uuid.uuid4().hex[:8]}")
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), r],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--base", default="", help="a git revision: base vs --new instead")
    parser.add_argument("--new", default="HEAD")
    parser.add_argument("--name", default="caches", help="the entry's name (with --base)")
    args = parser.parse_args()
    if args.base:
        trees = [worktree(args.base), worktree(args.new)]
        try:
            entry = run_main(bench_revisions(args, *trees))
        finally:
            for tree in trees:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(tree)],
                    cwd=ROOT, check=False, capture_output=True,
                )  # fmt: skip
        print(json.dumps(entry["summary"], indent=1))
        print(record_entry("currency_ab_rev", "runs", args.name, entry))
        return
    result = run_main(bench(args))
    print(write_result("currency_ab", result))
    print(result["summary_median"], result["ratio_ttl_1s_over_ttl_0"], sep="\n")


if __name__ == "__main__":
    main()
